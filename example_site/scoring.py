"""The score behind ``/rankings``: a Python function SQLite calls once per book in SQL.

``bookshop_score(reviews, rating_sum, rating_square_sum)`` is the lower bound of a confidence
interval around a book's Bayesian average rating: the average is pulled towards
:data:`PRIOR_MEAN` as if every book had :data:`PRIOR_WEIGHT` more reviews of that rating, and
:data:`Z` standard errors are taken off, so five 5-star reviews outrank a single one. On SQLite
the function is registered on every connection (:func:`register`) and the query orders by it;
elsewhere the page applies the same function in Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

SCORE_FUNCTION = "bookshop_score"
"""Name of the SQL function."""

PRIOR_MEAN = 3.5
"""Rating a book with no reviews is assumed to have."""
PRIOR_WEIGHT = 4.0
"""How many reviews the prior counts for."""
PRIOR_VARIANCE = 1.0
"""Spread of the prior's ratings (stars squared)."""
Z = 1.28
"""Standard errors taken off the mean (about a one-sided 90 % bound)."""

ScoreFn = Callable[[Any, Any, Any], float]


def make_score(prior_mean: float = PRIOR_MEAN, prior_weight: float = PRIOR_WEIGHT,
               prior_variance: float = PRIOR_VARIANCE, z: float = Z) -> ScoreFn:
    """The score function for these constants.

    A closure, so mpsqlite ships it to its worker processes by value: they need not be able to
    import example_site."""
    prior_second = prior_weight * (prior_variance + prior_mean * prior_mean)

    def score(reviews: Any, rating_sum: Any, rating_square_sum: Any) -> float:
        n = reviews or 0
        weight = prior_weight + n
        mean = (prior_weight * prior_mean + (rating_sum or 0)) / weight
        second = (prior_second + (rating_square_sum or 0)) / weight
        spread = max(second - mean * mean, 0.0)
        return round(mean - z * math.sqrt(spread / weight), 6)

    return score


score = make_score()
"""The score with the module's constants (the one registered in SQL)."""


def register(dbapi_connection: Any, _record: Any = None) -> None:
    """SQLAlchemy ``connect`` listener: define ``bookshop_score`` on a new SQLite connection."""
    dbapi_connection.create_function(SCORE_FUNCTION, 3, score, deterministic=True)

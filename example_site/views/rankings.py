"""``/rankings``: the top books by :mod:`~example_site.scoring`'s score, optionally per genre.

On SQLite the score is a Python function the query calls for every book
(``ORDER BY bookshop_score(...) DESC LIMIT 50``), which makes the statement GIL-heavy: mpsqlite
moves it to a worker process after its first run. Other databases rank in Python.
"""

from __future__ import annotations

from typing import Any

import cherrypy
from sqlalchemy import Float, cast, func, select
from sqlalchemy.orm import Session

from .. import scoring
from ..db import has_score_function
from ..models import GENRES, Author, Book, Review
from ..web import db, render, text_param

TOP = 50


def _per_book():
    """Review count, rating sum and sum of squares per book."""
    return (select(Review.book_id, func.count(Review.id).label("n"),
                   func.sum(Review.rating).label("total"),
                   func.sum(Review.rating * Review.rating).label("total_sq"))
            .group_by(Review.book_id).subquery("per_book"))


def top_books(session: Session, genre: str = "", limit: int = TOP) -> list[dict[str, Any]]:
    """The ``limit`` best-scored books (of ``genre`` when given), best first."""
    per_book = _per_book()
    n = func.coalesce(per_book.c.n, 0)
    total = func.coalesce(per_book.c.total, 0)
    total_sq = func.coalesce(per_book.c.total_sq, 0)
    columns = [Book.id, Book.title, Book.year, Book.genre, Author.id.label("author_id"),
               Author.name.label("author"), n.label("reviews"),
               (cast(per_book.c.total, Float) / per_book.c.n).label("avg_rating")]
    in_sql = has_score_function(session.get_bind())
    score = getattr(func, scoring.SCORE_FUNCTION)(n, total, total_sq).label("score")
    if in_sql:
        columns.append(score)
    else:
        columns += [total.label("total"), total_sq.label("total_sq")]
    stmt = (select(*columns).join(Author, Author.id == Book.author_id)
            .outerjoin(per_book, per_book.c.book_id == Book.id))
    if genre:
        stmt = stmt.where(Book.genre == genre)
    if in_sql:
        stmt = stmt.order_by(score.desc(), Book.id).limit(limit)
        return [dict(r) for r in session.execute(stmt).mappings()]
    rows = [dict(r) for r in session.execute(stmt).mappings()]
    for r in rows:
        r["score"] = scoring.score(r["reviews"], r.pop("total"),
                                   r.pop("total_sq"))
    rows.sort(key=lambda r: (-r["score"], r["id"]))
    return rows[:limit]


class Rankings:
    """``/rankings?genre=``: the top books by score."""

    @cherrypy.expose
    def index(self, genre: str = "", **_: Any) -> str:
        """Render the top :data:`TOP` books."""
        genre = text_param(genre)
        if genre and genre not in GENRES:
            raise cherrypy.HTTPError(404, f"No genre {genre!r}.")
        session = db()
        return render("rankings.html", books=top_books(session, genre), genre=genre,
                      genres=GENRES, top=TOP, in_sql=has_score_function(session.get_bind()),
                      function=scoring.SCORE_FUNCTION, prior_mean=scoring.PRIOR_MEAN,
                      prior_weight=scoring.PRIOR_WEIGHT, z=scoring.Z)

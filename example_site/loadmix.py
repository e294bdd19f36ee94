"""The documented request mix the web benchmark replays against the example site.

``LOAD_MIX`` is a list of ``(weight, target)``: ``target`` is a path, or a callable taking a
``random.Random`` and returning a path, for GET requests. ``WRITE_MIX`` has the same shape but its
callables return ``(path, json_body)`` to POST as ``application/json``. Both assume the default
seed scale (:data:`~example_site.seed.DEFAULT_BOOKS`); :func:`load_mix` builds them for another.
:func:`heavy_mix` is the same shape for the site's heavy pages (CSV export, regular-expression
search, rankings), whose statements call Python functions or return every row.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from .models import GENRES
from .seed import ADJECTIVES, DEFAULT_BOOKS, NOUNS, TOPICS, counts_for

Target = str | Callable[[random.Random], str]
WriteTarget = Callable[[random.Random], tuple[str, dict[str, Any]]]


def load_mix(books: int = DEFAULT_BOOKS) -> list[tuple[int, Target]]:
    """The GET mix for a database seeded with ``books`` books (weights sum to 100)."""
    counts = counts_for(books)
    n_books, n_authors = counts["books"], counts["authors"]
    list_pages = max(1, n_books // 25)
    sorts = ("title", "year", "price")

    def book_page(rng: random.Random) -> str:
        return f"/books?page={rng.randint(1, min(list_pages, 200))}&sort={rng.choice(sorts)}"

    def genre_page(rng: random.Random) -> str:
        return f"/books?genre={rng.choice(GENRES).replace(' ', '+')}&page={rng.randint(1, 20)}"

    def search(rng: random.Random) -> str:
        words = [rng.choice(TOPICS)] if rng.random() < 0.6 else \
            [rng.choice(NOUNS).lower(), rng.choice(TOPICS)]
        return "/search?q=" + "+".join(words)

    return [
        (12, "/"),
        (18, book_page),
        (6, genre_page),
        (22, lambda rng: f"/books/{rng.randint(1, n_books)}"),
        (6, lambda rng: f"/authors?page={rng.randint(1, max(1, n_authors // 25))}"),
        (8, lambda rng: f"/authors/{rng.randint(1, n_authors)}"),
        (12, search),
        (2, "/report"),
        (10, lambda rng: f"/api/books/{rng.randint(1, n_books)}"),
        (4, lambda rng: f"/api/books?page={rng.randint(1, min(list_pages, 200))}"),
    ]


def write_mix(books: int = DEFAULT_BOOKS) -> list[tuple[int, WriteTarget]]:
    """The POST mix: new reviews through the JSON API (each commits one INSERT)."""
    n_books = counts_for(books)["books"]

    def review(rng: random.Random) -> tuple[str, dict[str, Any]]:
        return (f"/api/books/{rng.randint(1, n_books)}/reviews",
                {"reviewer": f"bench{rng.randint(1, 9999)}", "rating": rng.randint(1, 5),
                 "body": f"Benchmark review about {rng.choice(TOPICS)}."})

    return [(1, review)]


def heavy_mix(books: int = DEFAULT_BOOKS) -> list[tuple[int, Target]]:
    """The GET mix of the heavy pages (weights sum to 100); the same paths at every scale.

    ``/export/books.csv`` returns every book; ``/search?mode=regex`` has SQLite call
    ``re.search`` on every title and description; ``/rankings`` has it call the score function
    on every book (of a genre)."""
    del books  # the paths do not depend on the scale; the argument keeps load_mix's signature

    def regex(rng: random.Random) -> str:
        pattern = rng.choice((
            f"\\b{rng.choice(TOPICS)}\\b.*\\b{rng.choice(TOPICS)}\\b",
            f"^the {rng.choice(ADJECTIVES).lower()}",
            f"{rng.choice(NOUNS).lower()}s?$",
            f"(?:{rng.choice(TOPICS)}|{rng.choice(TOPICS)}) and {rng.choice(TOPICS)}",
        ))
        return "/search?" + urlencode({"q": pattern, "mode": "regex"})

    def rankings(rng: random.Random) -> str:
        if rng.random() < 0.3:
            return "/rankings"
        return "/rankings?" + urlencode({"genre": rng.choice(GENRES)})

    return [
        (20, "/export/books.csv"),
        (50, regex),
        (30, rankings),
    ]


def pick(mix: list[tuple[int, Any]], rng: random.Random) -> Any:
    """Draw one target from ``mix`` by weight and resolve callables with ``rng``."""
    target = rng.choices([t for _, t in mix], weights=[w for w, _ in mix])[0]
    return target(rng) if callable(target) else target


LOAD_MIX: list[tuple[int, Target]] = load_mix()
"""GET mix for the default scale: 12% home, 24% book lists, 22% book pages, 14% authors,
12% search, 2% report, 14% JSON API."""

HEAVY_MIX: list[tuple[int, Target]] = heavy_mix()
"""GET mix of the heavy pages: 20% CSV export, 50% regular-expression search, 30% rankings."""

WRITE_MIX: list[tuple[int, WriteTarget]] = write_mix()
"""POST mix for the default scale: reviews via ``POST /api/books/<id>/reviews``."""

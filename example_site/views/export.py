"""``/export/books.csv``: the whole catalogue as CSV, streamed as it is read.

The export reads on a connection of its own (not the request's session), ``CHUNK`` rows at a
time, and sends each chunk as soon as it is written, so memory stays flat whatever the size of
the catalogue. Every row is a book with its author, genre, year, price and average rating.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import cherrypy
from sqlalchemy import Engine, func, select

from ..models import Author, Book, Review
from ..web import site

CHUNK = 1000
HEADER = ("id", "title", "author", "genre", "year", "price", "average_rating", "reviews", "isbn")


def export_query():
    """Every book with its author and review aggregates, in id order."""
    per_book = (select(Review.book_id, func.count(Review.id).label("n"),
                       func.avg(Review.rating).label("avg"))
                .group_by(Review.book_id).subquery("per_book"))
    return (select(Book.id, Book.title, Author.name, Book.genre, Book.year, Book.price_cents,
                   per_book.c.avg, func.coalesce(per_book.c.n, 0), Book.isbn)
            .join(Author, Author.id == Book.author_id)
            .outerjoin(per_book, per_book.c.book_id == Book.id)
            .order_by(Book.id))


def catalogue_csv(engine: Engine, chunk: int = CHUNK) -> Iterator[bytes]:
    """The CSV file, header first, in chunks of about ``chunk`` books (RFC 4180 quoting)."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow(HEADER)
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=chunk).execute(export_query())
        for rows in result.partitions():
            for bid, title, author, genre, year, cents, avg, n, isbn in rows:
                rating = "" if avg is None else f"{float(avg):.2f}"
                out.writerow((bid, title, author, genre, year, f"{cents / 100:.2f}", rating, n,
                              isbn))
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode("utf-8")


class Export:
    """``/export/<file>``: downloads; ``books.csv`` is the catalogue."""

    @cherrypy.expose
    def index(self, **_: Any) -> str:
        """``/export`` itself: to the only file there is."""
        raise cherrypy.HTTPRedirect("/export/books.csv", 303)

    @cherrypy.expose
    def default(self, name: str, **_: Any) -> Iterator[bytes]:
        """Stream ``books.csv`` as an attachment; anything else is 404."""
        if name != "books.csv":
            raise cherrypy.NotFound()
        headers = cherrypy.response.headers
        headers["Content-Type"] = "text/csv; charset=utf-8"
        headers["Content-Disposition"] = 'attachment; filename="books.csv"'
        headers["Cache-Control"] = "no-store"
        return catalogue_csv(site().engine)

    default._cp_config = {"response.stream": True}  # type: ignore[attr-defined]

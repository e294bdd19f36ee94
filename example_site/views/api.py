"""The JSON API under ``/api``: read endpoints for every page plus one write (a review).

``POST /api/books/<id>/reviews`` takes ``application/json`` only: browsers cannot send that
cross-site without a CORS preflight, which is what protects it instead of a CSRF token.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import cherrypy
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..forms import validate_review
from ..models import Author, Book, Review
from ..web import db, int_param, json_reply, paginate, text_param
from .catalog import book_list_query
from .insights import report_data, search_books
from .status import status_data


def book_dict(book: Book, author_name: str | None = None, avg: float | None = None,
              reviews: int | None = None) -> dict[str, Any]:
    """A book as JSON-ready data (without tags or reviews, which cost extra queries)."""
    return {"id": book.id, "title": book.title, "author_id": book.author_id,
            "author": author_name, "year": book.year, "genre": book.genre,
            "price": book.price_cents / 100, "pages": book.pages, "isbn": book.isbn,
            "avg_rating": None if avg is None else round(float(avg), 2), "reviews": reviews}


def review_dict(review: Review) -> dict[str, Any]:
    """A review as JSON-ready data."""
    return {"id": review.id, "book_id": review.book_id, "reviewer": review.reviewer,
            "rating": review.rating, "body": review.body,
            "created_at": review.created_at.isoformat(timespec="seconds")}


def _not_found(what: str) -> bytes:
    return json_reply({"error": f"{what} not found"}, 404)


class Api:
    """``/api/...`` endpoints; every reply is JSON, errors included."""

    @cherrypy.expose
    def index(self, **_: Any) -> bytes:
        """List the endpoints."""
        return json_reply({"endpoints": [
            "/api/books?page=&per_page=&genre=&tag=&sort=", "/api/books/<id>",
            "POST /api/books/<id>/reviews", "/api/authors?page=", "/api/authors/<id>",
            "/api/search?q=", "/api/report", "/api/status"]})

    @cherrypy.expose
    def books(self, book_id: str | None = None, action: str | None = None,
              page: str = "1", per_page: str = "25", genre: str = "", tag: str = "",
              sort: str = "title", **_: Any) -> bytes:
        """``/api/books`` (paginated list), ``/api/books/<id>``, ``.../<id>/reviews``."""
        if book_id is None:
            stmt, count = book_list_query(text_param(genre), text_param(tag), text_param(sort))
            result = paginate(db(), stmt, int_param(page, 1), int_param(per_page, 25, hi=100),
                              count)
            return json_reply({**result.as_dict(),
                               "items": [book_dict(*row) for row in result.items]})
        bid = int_param(book_id, 0, lo=0)
        book = db().get(Book, bid, options=[selectinload(Book.tags)]) if bid else None
        if book is None:
            return _not_found("book")
        if action == "reviews" and cherrypy.request.method == "POST":
            return self._post_review(book)
        if action not in (None, "reviews"):
            return _not_found("resource")
        avg, n = db().execute(select(func.avg(Review.rating), func.count(Review.id))
                              .where(Review.book_id == book.id)).one()
        latest = db().scalars(select(Review).where(Review.book_id == book.id)
                              .order_by(Review.created_at.desc(), Review.id.desc()).limit(10))
        data = book_dict(book, book.author.name, avg, n)
        data.update(description=book.description, tags=[t.name for t in book.tags],
                    latest_reviews=[review_dict(r) for r in latest])
        return json_reply(data)

    def _post_review(self, book: Book) -> bytes:
        ctype = cherrypy.request.headers.get("Content-Type", "")
        if not ctype.startswith("application/json"):
            return json_reply({"error": "send application/json"}, 415)
        try:
            payload = json.loads(cherrypy.request.body.read() or b"null")
        except ValueError:
            return json_reply({"error": "malformed JSON"}, 400)
        if not isinstance(payload, dict):
            return json_reply({"error": "expected a JSON object"}, 400)
        values, errors = validate_review({k: str(v) for k, v in payload.items()})
        if errors:
            return json_reply({"errors": errors}, 400)
        review = Review(book_id=book.id, created_at=dt.datetime.now(), **values)
        db().add(review)
        db().flush()
        return json_reply(review_dict(review), 201)

    @cherrypy.expose
    def authors(self, author_id: str | None = None, page: str = "1", **_: Any) -> bytes:
        """``/api/authors`` (paginated, with book counts) and ``/api/authors/<id>``."""
        if author_id is None:
            stmt = (select(Author, func.count(Book.id)).outerjoin(Book)
                    .group_by(Author.id).order_by(Author.name, Author.id))
            result = paginate(db(), stmt, int_param(page, 1), 25, select(func.count(Author.id)))
            items = [{"id": a.id, "name": a.name, "country": a.country, "books": n}
                     for a, n in result.items]
            return json_reply({**result.as_dict(), "items": items})
        aid = int_param(author_id, 0, lo=0)
        author = db().get(Author, aid) if aid else None
        if author is None:
            return _not_found("author")
        return json_reply({"id": author.id, "name": author.name, "country": author.country,
                           "born": author.born, "bio": author.bio,
                           "books": [book_dict(b, author.name) for b in author.books]})

    @cherrypy.expose
    def search(self, q: str = "", page: str = "1", **_: Any) -> bytes:
        """Full-text search results (snippets as plain text, without the highlighting)."""
        q = text_param(q)
        result = search_books(db(), q, int_param(page, 1))
        items = [{k: (v.striptags() if isinstance(v, Markup) else v) for k, v in item.items()}
                 for item in result.items]
        return json_reply({**result.as_dict(), "q": q, "items": items})

    @cherrypy.expose
    def report(self, **_: Any) -> bytes:
        """The data of the /report page."""
        return json_reply(report_data(db()))

    @cherrypy.expose
    def status(self, **_: Any) -> bytes:
        """Live worker-pool and request statistics (what /status polls)."""
        cherrypy.response.headers["Cache-Control"] = "no-store"
        return json_reply(status_data())

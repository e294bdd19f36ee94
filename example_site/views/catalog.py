"""Catalogue pages: paginated book and author lists, detail pages and the create/edit forms."""

from __future__ import annotations

import datetime as dt
from typing import Any

import cherrypy
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..forms import validate_author, validate_book, validate_review
from ..models import GENRES, Author, Book, Review, Tag, book_tag
from ..web import check_csrf, db, int_param, paginate, render, require_post, text_param

PER_PAGE = 25
SORTS = {
    "title": (Book.title, Book.id),
    "year": (Book.year.desc(), Book.id),
    "price": (Book.price_cents, Book.id),
    "rating": None,  # ordered by the correlated average, see book_list_query
}


def rating_columns():
    """Correlated (average rating, review count) of ``Book``: computed only for listed rows."""
    avg = (select(func.avg(Review.rating)).where(Review.book_id == Book.id)
           .correlate(Book).scalar_subquery().label("avg_rating"))
    count = (select(func.count(Review.id)).where(Review.book_id == Book.id)
             .correlate(Book).scalar_subquery().label("reviews"))
    return avg, count


def book_list_query(genre: str = "", tag: str = "", sort: str = "title"):
    """Books joined with their author and ratings, filtered and ordered; (stmt, count stmt)."""
    avg, reviews = rating_columns()
    stmt = select(Book, Author.name, avg, reviews).join(Author, Author.id == Book.author_id)
    count = select(func.count(Book.id))
    if genre:
        stmt = stmt.where(Book.genre == genre)
        count = count.where(Book.genre == genre)
    if tag:
        tagged = select(book_tag.c.book_id).join(Tag, Tag.id == book_tag.c.tag_id)
        tagged = tagged.where(Tag.name == tag)
        stmt = stmt.where(Book.id.in_(tagged))
        count = count.where(Book.id.in_(tagged))
    if sort == "rating":
        order = (func.coalesce(avg, 0).desc(), Book.id)
    else:
        order = SORTS.get(sort) or SORTS["title"]
    return stmt.order_by(*order), count


def _load_book(book_id: Any) -> Book:
    bid = int_param(book_id, 0, lo=0)
    book = db().get(Book, bid, options=[selectinload(Book.tags)]) if bid else None
    if book is None:
        raise cherrypy.NotFound()
    return book


def _book_context(book: Book) -> dict[str, Any]:
    session = db()
    avg, n = session.execute(
        select(func.avg(Review.rating), func.count(Review.id)).where(Review.book_id == book.id)
    ).one()
    reviews = session.scalars(
        select(Review).where(Review.book_id == book.id)
        .order_by(Review.created_at.desc(), Review.id.desc()).limit(20)
    ).all()
    more = session.scalars(
        select(Book).where(Book.author_id == book.author_id, Book.id != book.id)
        .order_by(Book.year.desc()).limit(5)
    ).all()
    return {"book": book, "avg_rating": avg, "review_count": n, "reviews": reviews,
            "more_by_author": more}


def _book_form_values(book: Book) -> dict[str, Any]:
    return {"title": book.title, "author_id": book.author_id, "year": book.year,
            "genre": book.genre, "price": f"{book.price_cents / 100:.2f}", "pages": book.pages,
            "isbn": book.isbn, "description": book.description,
            "tags": ", ".join(t.name for t in book.tags)}


def _all_tags() -> list[str]:
    return list(db().scalars(select(Tag.name).order_by(Tag.name)))


def _all_authors() -> list:
    """Every author for the book form's menu: (id, name, country, born), sorted by name."""
    return db().execute(select(Author.id, Author.name, Author.country, Author.born)
                        .order_by(Author.name, Author.id)).all()


class Books:
    """``/books``: list, detail, ``/books/new``, ``/books/<id>/edit``, ``/books/<id>/reviews``."""

    @cherrypy.expose
    def index(self, page: str = "1", genre: str = "", tag: str = "", sort: str = "title",
              **_: Any) -> str:
        """Paginated list of books with author and rating, filterable by genre and tag."""
        genre, tag, sort = text_param(genre), text_param(tag), text_param(sort)
        stmt, count = book_list_query(genre, tag, sort)
        result = paginate(db(), stmt, int_param(page, 1), PER_PAGE, count)
        return render("books.html", page=result, genre=genre, tag=tag, sort=sort,
                      genres=GENRES, tags=_all_tags(), authors=_all_authors())

    @cherrypy.expose
    def new(self, **params: Any) -> str:
        """Form that creates a book; POST validates it and redirects to the new book."""
        session = db()
        if cherrypy.request.method != "POST":
            values = {"author_id": params.get("author_id", ""), "genre": GENRES[0]}
            return render("book_form.html", values=values, errors={}, book=None,
                          genres=GENRES, tags=_all_tags(), authors=_all_authors())
        check_csrf(params.get("csrf_token"))
        values, errors = validate_book(params, session)
        if errors:
            return render("book_form.html", http_status=400, values=params, errors=errors,
                          book=None, genres=GENRES, tags=_all_tags(), authors=_all_authors())
        book = Book(**values)
        session.add(book)
        session.flush()
        raise cherrypy.HTTPRedirect(f"/books/{book.id}", 303)

    @cherrypy.expose
    def default(self, book_id: str, action: str | None = None, **params: Any) -> str:
        """Dispatch ``/books/<id>[/<action>]`` to the detail page, the edit form or reviews."""
        book = _load_book(book_id)
        if action is None:
            return render("book.html", review_values={}, errors={}, **_book_context(book))
        if action == "edit":
            return self._edit(book, params)
        if action == "reviews":
            return self._add_review(book, params)
        raise cherrypy.NotFound()

    def _edit(self, book: Book, params: dict[str, Any]) -> str:
        if cherrypy.request.method != "POST":
            return render("book_form.html", values=_book_form_values(book), errors={},
                          book=book, genres=GENRES, tags=_all_tags(), authors=_all_authors())
        check_csrf(params.get("csrf_token"))
        values, errors = validate_book(params, db(), book_id=book.id)
        if errors:
            return render("book_form.html", http_status=400, values=params, errors=errors,
                          book=book, genres=GENRES, tags=_all_tags(), authors=_all_authors())
        for key, value in values.items():
            setattr(book, key, value)
        raise cherrypy.HTTPRedirect(f"/books/{book.id}", 303)

    def _add_review(self, book: Book, params: dict[str, Any]) -> str:
        require_post()
        check_csrf(params.get("csrf_token"))
        values, errors = validate_review(params)
        if errors:
            return render("book.html", http_status=400, review_values=params, errors=errors,
                          **_book_context(book))
        db().add(Review(book_id=book.id, created_at=dt.datetime.now(), **values))
        raise cherrypy.HTTPRedirect(f"/books/{book.id}#reviews", 303)


class Authors:
    """``/authors``: list with book counts, detail page and ``/authors/new``."""

    @cherrypy.expose
    def index(self, page: str = "1", country: str = "", **_: Any) -> str:
        """Paginated authors with their number of books."""
        country = text_param(country)
        stmt = (
            select(Author, func.count(Book.id).label("books"))
            .outerjoin(Book, Book.author_id == Author.id)
            .group_by(Author.id)
            .order_by(Author.name, Author.id)
        )
        count = select(func.count(Author.id))
        if country:
            stmt = stmt.where(Author.country == country)
            count = count.where(Author.country == country)
        result = paginate(db(), stmt, int_param(page, 1), PER_PAGE, count)
        countries = db().scalars(select(Author.country).distinct().order_by(Author.country))
        return render("authors.html", page=result, country=country, countries=list(countries))

    @cherrypy.expose
    def new(self, **params: Any) -> str:
        """Form that creates an author; POST validates it and redirects to the author."""
        if cherrypy.request.method != "POST":
            return render("author_form.html", values={}, errors={})
        check_csrf(params.get("csrf_token"))
        values, errors = validate_author(params)
        if errors:
            return render("author_form.html", http_status=400, values=params, errors=errors)
        author = Author(**values)
        db().add(author)
        db().flush()
        raise cherrypy.HTTPRedirect(f"/authors/{author.id}", 303)

    @cherrypy.expose
    def default(self, author_id: str, **_: Any) -> str:
        """Author detail: biography and every book with its rating."""
        aid = int_param(author_id, 0, lo=0)
        author = db().get(Author, aid) if aid else None
        if author is None:
            raise cherrypy.NotFound()
        books = db().execute(
            select(Book, func.avg(Review.rating), func.count(Review.id))
            .outerjoin(Review, Review.book_id == Book.id)
            .where(Book.author_id == author.id)
            .group_by(Book.id).order_by(Book.year, Book.id)
        ).all()
        return render("author.html", author=author, books=books)

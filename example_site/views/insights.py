"""Search (SQLite FTS5, LIKE elsewhere; or a regular expression), the report and the home page.

The regular-expression search uses SQLAlchemy's ``regexp_match``: on SQLite that is
``REGEXP``, a Python function (``re.search``) the dialect registers on every connection and
SQLite calls for every title and description, which makes it GIL-heavy; on PostgreSQL it is the
``~`` operator.
"""

from __future__ import annotations

import re
from typing import Any

import cherrypy
from markupsafe import Markup, escape
from sqlalchemy import Float, and_, cast, extract, func, or_, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ..db import has_fts
from ..models import Author, Book, Review, Tag, book_tag
from ..web import Page, db, int_param, render, text_param

PER_PAGE = 20
_MARK_OPEN, _MARK_CLOSE = "\x02", "\x03"

_FTS_SQL = text(
    "SELECT b.id, b.title, b.year, b.genre, a.id AS author_id, a.name AS author, "
    "snippet(book_fts, 2, :mo, :mc, '…', 14) AS snippet "
    "FROM book_fts JOIN book b ON b.id = book_fts.rowid JOIN author a ON a.id = b.author_id "
    "WHERE book_fts MATCH :q ORDER BY book_fts.rank, b.id LIMIT :limit OFFSET :offset"
)
_FTS_COUNT = text("SELECT count(*) FROM book_fts WHERE book_fts MATCH :q")


def search_terms(q: str) -> list[str]:
    """The words of a user query (at most 8); punctuation and FTS operators are dropped."""
    return re.findall(r"\w+", q.lower())[:8]


def _highlight(snippet: str) -> Markup:
    return Markup(str(escape(snippet)).replace(_MARK_OPEN, "<mark>")
                  .replace(_MARK_CLOSE, "</mark>"))


def search_books(session: Session, q: str, page: int, per_page: int = PER_PAGE) -> Page:
    """Books matching every word of ``q`` as a prefix; ranked by FTS5 bm25 where available."""
    terms = search_terms(q)
    if not terms:
        return Page([], 1, per_page, 0)
    offset = (page - 1) * per_page
    if has_fts(session.get_bind()):
        match = " ".join(f'"{t}"*' for t in terms)
        total = session.execute(_FTS_COUNT, {"q": match}).scalar_one()
        rows = session.execute(_FTS_SQL, {"q": match, "mo": _MARK_OPEN, "mc": _MARK_CLOSE,
                                          "limit": per_page, "offset": offset}).mappings()
        items = [dict(r, snippet=_highlight(r["snippet"])) for r in rows]
        return Page(items, page, per_page, total)
    return _search_like(session, terms, page, per_page)


def _search_like(session: Session, terms: list[str], page: int, per_page: int) -> Page:
    conds = []
    for term in terms:
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conds.append(or_(Book.title.ilike(pattern, escape="\\"),
                         Book.description.ilike(pattern, escape="\\"),
                         Author.name.ilike(pattern, escape="\\")))
    base = select(Book.id, Book.title, Book.year, Book.genre, Author.id.label("author_id"),
                  Author.name.label("author"), Book.description.label("snippet"))
    base = base.join(Author, Author.id == Book.author_id).where(and_(*conds))
    total = session.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    rows = session.execute(base.order_by(Book.title, Book.id).limit(per_page)
                           .offset((page - 1) * per_page)).mappings()
    return Page([dict(r) for r in rows], page, per_page, total)


MAX_PATTERN = 200
"""Longest regular expression the search accepts (characters)."""
SEARCH_MODES = ("words", "regex")


class BadPattern(ValueError):
    """A regular expression the search cannot run; the message is shown to the user."""


def regex_pattern(q: str) -> str:
    """``q`` as a case-insensitive Python regular expression; BadPattern if it is not one."""
    if len(q) > MAX_PATTERN:
        raise BadPattern(f"The regular expression is {len(q)} characters long; "
                         f"at most {MAX_PATTERN} are allowed.")
    pattern = "(?i)" + q
    try:
        re.compile(q, re.IGNORECASE)  # positions in the message are the user's
        re.compile(pattern)
    except re.error as exc:
        raise BadPattern(f"Invalid regular expression {q!r}: {exc}.") from None
    return pattern


def _regex_snippet(pattern: str, description: str) -> Markup:
    """The description with the matches of ``pattern`` marked (none when only the title matched)."""
    parts, last = [], 0
    for m in re.finditer(pattern, description):
        if m.end() > m.start():
            parts += [description[last:m.start()], _MARK_OPEN, m.group(), _MARK_CLOSE]
            last = m.end()
    return _highlight("".join(parts) + description[last:])


def regex_search(session: Session, q: str, page: int, per_page: int = PER_PAGE) -> Page:
    """Books whose title or description matches the regular expression ``q`` (any case)."""
    pattern = regex_pattern(q)
    cond = or_(Book.title.regexp_match(pattern), Book.description.regexp_match(pattern))
    base = (select(Book.id, Book.title, Book.year, Book.genre, Author.id.label("author_id"),
                   Author.name.label("author"), Book.description.label("snippet"))
            .join(Author, Author.id == Book.author_id).where(cond))
    try:
        total = session.execute(select(func.count()).select_from(base.subquery())).scalar_one()
        rows = session.execute(base.order_by(Book.title, Book.id).limit(per_page)
                               .offset((page - 1) * per_page)).mappings().all()
    except DBAPIError as exc:  # a pattern Python accepts and the database does not
        raise BadPattern(f"The database cannot run the regular expression {q!r}: "
                         f"{exc.orig}.") from None
    items = [dict(r, snippet=_regex_snippet(pattern, r["snippet"] or "")) for r in rows]
    return Page(items, page, per_page, total)


def _per_book_reviews():
    """Review count and rating sum per book: the pre-aggregate the report joins against."""
    return (select(Review.book_id, func.count(Review.id).label("n"),
                   func.sum(Review.rating).label("total"))
            .group_by(Review.book_id).subquery("per_book"))


def _weighted_avg(per_book):
    return cast(func.sum(per_book.c.total), Float) / func.nullif(func.sum(per_book.c.n), 0)


def report_data(session: Session) -> dict[str, list[dict[str, Any]]]:
    """The heavy aggregates behind /report and /api/report (full scans, joins, GROUP BYs)."""
    per_book = _per_book_reviews()
    genres = session.execute(
        select(Book.genre, func.count(Book.id).label("books"),
               func.avg(Book.price_cents).label("avg_price"),
               func.avg(Book.pages).label("avg_pages"),
               func.coalesce(func.sum(per_book.c.n), 0).label("reviews"),
               _weighted_avg(per_book).label("avg_rating"))
        .outerjoin(per_book, per_book.c.book_id == Book.id)
        .group_by(Book.genre).order_by(Book.genre)
    ).mappings().all()
    authors = session.execute(
        select(Author.id, Author.name, Author.country, func.count(Book.id).label("books"),
               func.sum(per_book.c.n).label("reviews"),
               _weighted_avg(per_book).label("avg_rating"))
        .join(Book, Book.author_id == Author.id)
        .join(per_book, per_book.c.book_id == Book.id)
        .group_by(Author.id, Author.name, Author.country)
        .having(func.sum(per_book.c.n) >= 10)
        .order_by(_weighted_avg(per_book).desc(), Author.id).limit(15)
    ).mappings().all()
    decade = (Book.year - Book.year % 10).label("decade")
    decades = session.execute(
        select(decade, func.count(Book.id).label("books"),
               func.avg(Book.price_cents).label("avg_price"))
        .group_by(decade).order_by(decade)
    ).mappings().all()
    ratings = session.execute(
        select(Review.rating, func.count(Review.id).label("reviews"))
        .group_by(Review.rating).order_by(Review.rating)
    ).mappings().all()
    tags = session.execute(
        select(Tag.name, func.count(book_tag.c.book_id).label("books"),
               func.coalesce(func.sum(per_book.c.n), 0).label("reviews"),
               _weighted_avg(per_book).label("avg_rating"))
        .join(book_tag, book_tag.c.tag_id == Tag.id)
        .outerjoin(per_book, per_book.c.book_id == book_tag.c.book_id)
        .group_by(Tag.name).order_by(func.sum(per_book.c.n).desc(), Tag.name).limit(15)
    ).mappings().all()
    year = extract("year", Review.created_at).label("year")
    per_year = session.execute(
        select(year, func.count(Review.id).label("reviews"),
               func.avg(Review.rating).label("avg_rating"))
        .group_by(year).order_by(year)
    ).mappings().all()
    return {key: [dict(r) for r in rows] for key, rows in (
        ("genres", genres), ("top_authors", authors), ("decades", decades),
        ("ratings", ratings), ("tags", tags), ("reviews_per_year", per_year))}


def home_data(session: Session) -> dict[str, Any]:
    """Counts, the latest reviews and staff picks for the front page."""
    counts = {name: session.execute(select(func.count()).select_from(model)).scalar_one()
              for name, model in (("books", Book), ("authors", Author), ("reviews", Review))}
    latest = session.execute(
        select(Review, Book.title).join(Book, Book.id == Review.book_id)
        .order_by(Review.created_at.desc(), Review.id.desc()).limit(8)
    ).all()
    picks = session.execute(
        select(Book, Author.name).join(Author, Author.id == Book.author_id)
        .join(book_tag, book_tag.c.book_id == Book.id).join(Tag, Tag.id == book_tag.c.tag_id)
        .where(Tag.name == "staff-pick").order_by(Book.year.desc(), Book.id).limit(6)
    ).all()
    return {"counts": counts, "latest": latest, "picks": picks}


class Search:
    """``/search?q=words``: full-text search over titles, authors and descriptions;
    ``/search?q=regex&mode=regex``: a regular expression over titles and descriptions."""

    @cherrypy.expose
    def index(self, q: str = "", page: str = "1", mode: str = "words", **_: Any) -> str:
        """Render the search form and, when ``q`` is given, one page of results.

        An invalid regular expression gets the form back with the reason, as a 400."""
        q, mode = text_param(q), text_param(mode)
        mode = mode if mode in SEARCH_MODES else "words"
        fts = has_fts(db().get_bind())
        if mode == "words" or not q:
            result = search_books(db(), q, int_param(page, 1))
            return render("search.html", q=q, mode=mode, page=result, fts=fts, error=None)
        try:
            result = regex_search(db(), q, int_param(page, 1))
        except BadPattern as exc:
            return render("search.html", http_status=400, q=q, mode=mode, fts=fts,
                          page=Page([], 1, PER_PAGE, 0), error=str(exc))
        return render("search.html", q=q, mode=mode, page=result, fts=fts, error=None)


class Report:
    """``/report``: catalogue statistics built from heavy aggregate queries."""

    @cherrypy.expose
    def index(self, **_: Any) -> str:
        """Render every table of :func:`report_data`."""
        return render("report.html", **report_data(db()))

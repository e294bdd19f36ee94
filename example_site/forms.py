"""Validation of the site's forms; each validator returns (clean values, errors by field).

Handlers write nothing unless ``errors`` is empty, and answer 400 with the messages otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import GENRES, Author, Book, Tag

Errors = dict[str, str]

_ISBN = re.compile(r"^[0-9][0-9-]{8,18}[0-9Xx]$")


def _text(params: dict[str, Any], name: str) -> str:
    value = params.get(name, "")
    if isinstance(value, list):  # a field sent twice: keep the first
        value = value[0] if value else ""
    return str(value).strip()


def _int(raw: str, errors: Errors, name: str, label: str, lo: int, hi: int) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        errors[name] = f"{label} must be a whole number."
        return None
    if not lo <= value <= hi:
        errors[name] = f"{label} must be between {lo} and {hi}."
        return None
    return value


def _required(raw: str, errors: Errors, name: str, label: str, max_len: int) -> str:
    if not raw:
        errors[name] = f"{label} is required."
    elif len(raw) > max_len:
        errors[name] = f"{label} must be at most {max_len} characters."
    return raw


def validate_author(params: dict[str, Any]) -> tuple[dict[str, Any], Errors]:
    """Check the author form: name required, birth year optional and plausible."""
    errors: Errors = {}
    values: dict[str, Any] = {
        "name": _required(_text(params, "name"), errors, "name", "Name", 120),
        "country": _text(params, "country")[:60],
        "bio": _text(params, "bio")[:2000],
        "born": None,
    }
    born = _text(params, "born")
    if born:
        values["born"] = _int(born, errors, "born", "Year of birth", 1000, 2030)
    return values, errors


def validate_book(
    params: dict[str, Any], session: Session, book_id: int | None = None
) -> tuple[dict[str, Any], Errors]:
    """Check the book form against the database (author exists, ISBN unused, tags known)."""
    errors: Errors = {}
    values: dict[str, Any] = {
        "title": _required(_text(params, "title"), errors, "title", "Title", 200),
        "description": _text(params, "description")[:5000],
        "genre": _text(params, "genre"),
        "isbn": _text(params, "isbn"),
    }
    if values["genre"] not in GENRES:
        errors["genre"] = "Choose a genre from the list."
    values["year"] = _int(_text(params, "year"), errors, "year", "Year", 1450, 2030)
    values["pages"] = _int(_text(params, "pages"), errors, "pages", "Pages", 1, 20000)
    values["price_cents"] = _price(_text(params, "price"), errors)
    author_id = _author(_text(params, "author_id"), errors, session)
    values["author_id"] = author_id
    if not _ISBN.match(values["isbn"]):
        errors["isbn"] = "ISBN must be 10-20 digits and dashes."
    else:
        clash = session.scalar(select(Book.id).where(Book.isbn == values["isbn"]))
        if clash is not None and clash != book_id:
            errors["isbn"] = f"ISBN already used by book #{clash}."
    tag_names = sorted({t.strip().lower() for t in _text(params, "tags").split(",") if t.strip()})
    tags = list(session.scalars(select(Tag).where(Tag.name.in_(tag_names)))) if tag_names else []
    unknown = set(tag_names) - {t.name for t in tags}
    if unknown:
        errors["tags"] = "Unknown tag(s): " + ", ".join(sorted(unknown))
    values["tags"] = tags
    return values, errors


def _author(raw: str, errors: Errors, session: Session) -> int | None:
    """The id chosen in the form's author menu, if it is an author's."""
    try:
        author_id = int(raw)
    except ValueError:
        errors["author_id"] = "Choose an author from the list."
        return None
    if not 1 <= author_id <= 2**31 or session.get(Author, author_id) is None:
        errors["author_id"] = f"There is no author #{author_id}; choose one from the list."
        return None
    return author_id


def _price(raw: str, errors: Errors) -> int | None:
    try:
        cents = round(float(raw.lstrip("$")) * 100)
    except (ValueError, OverflowError):  # also "nan" and "inf"
        errors["price"] = "Price must be a number such as 12.99."
        return None
    if not 0 <= cents <= 100_000:
        errors["price"] = "Price must be between 0 and 1000."
        return None
    return cents


def validate_review(params: dict[str, Any]) -> tuple[dict[str, Any], Errors]:
    """Check the review form: reviewer name, rating 1-5 and a short text."""
    errors: Errors = {}
    values: dict[str, Any] = {
        "reviewer": _required(_text(params, "reviewer"), errors, "reviewer", "Your name", 80),
        "body": _required(_text(params, "body"), errors, "body", "Review", 4000),
    }
    values["rating"] = _int(_text(params, "rating"), errors, "rating", "Rating", 1, 5)
    return values, errors

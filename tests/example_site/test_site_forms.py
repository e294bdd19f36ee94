"""Forms that write: create/edit books, create authors, post reviews; bad input writes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _site_support import count_rows, csrf_from, fetch_all, fetch_one
from webtest import TestApp

GOOD_BOOK = {
    "title": "The Testing Lighthouse", "author_id": "1", "genre": "Mystery", "year": "2021",
    "pages": "321", "price": "17.50", "isbn": "978-1-23456-789-0",
    "tags": "classic, debut", "description": "Zanzibarian clockwork detectives.",
}


def _fill(form, values: dict[str, str]) -> None:
    for name, value in values.items():
        form[name] = value


def test_create_book_writes_it_and_redirects(app: TestApp, db_path: Path) -> None:
    before = count_rows(db_path, "book")
    form = app.get("/books/new").forms["book-form"]
    _fill(form, GOOD_BOOK)
    res = form.submit(status=303)
    book_id = int(res.headers["Location"].rsplit("/", 1)[1])
    assert count_rows(db_path, "book") == before + 1
    row = fetch_one(db_path, "SELECT title, author_id, year, price_cents, isbn FROM book "
                             "WHERE id = ?", (book_id,))
    assert row == ("The Testing Lighthouse", 1, 2021, 1750, "978-1-23456-789-0")
    tags = {r for (r,) in _rows(db_path, "SELECT t.name FROM tag t JOIN book_tag bt ON "
                                         f"bt.tag_id = t.id WHERE bt.book_id = {book_id}")}
    assert tags == {"classic", "debut"}
    page = res.follow()
    assert "The Testing Lighthouse" in page.text and "$17.50" in page.text
    # the new book is in the full-text index too (kept in sync by triggers on SQLite)
    found = app.get("/search", params={"q": "zanzibarian"})
    assert f'href="/books/{book_id}"' in found.text


def test_book_form_offers_every_author_by_name(app: TestApp, db_path: Path) -> None:
    page = app.get("/books/new")
    menu = page.text.split('<select id="f-author_id" name="author_id" required>', 1)[1]
    menu = menu.split("</select>", 1)[0]
    options = re.findall(r'<option value="(\d+)"[^>]*>([^<(]+?)(?: \(|</option>)', menu)
    expected = fetch_all(db_path, "SELECT id, name FROM author ORDER BY name, id")
    assert [(int(i), name) for i, name in options] == expected
    assert '<option value="">Choose an author…</option>' in menu
    # the author page's "+ Add a book" link and the edit form preselect the author
    preset = app.get("/books/new", params={"author_id": "3"}).forms["book-form"]
    assert preset["author_id"].value == "3"
    author_of_2 = fetch_one(db_path, "SELECT author_id FROM book WHERE id = 2")[0]
    assert app.get("/books/2/edit").forms["book-form"]["author_id"].value == str(author_of_2)


def _rows(path: Path, sql: str) -> list[tuple]:
    return fetch_all(path, sql)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("title", "", "Title is required."),
        ("author_id", "999999", "There is no author #999999; choose one from the list."),
        ("author_id", "abc", "Choose an author from the list."),
        ("author_id", "", "Choose an author from the list."),
        ("year", "12", "Year must be between 1450 and 2030."),
        ("price", "cheap", "Price must be a number such as 12.99."),
        ("price", "nan", "Price must be a number such as 12.99."),
        ("genre", "Cookbooks", "Choose a genre from the list."),
        ("isbn", "978-0000000001", "ISBN already used by book #1."),
        ("tags", "classic, nosuchtag", "Unknown tag(s): nosuchtag"),
    ],
)
def test_create_book_rejects_bad_input(app: TestApp, db_path: Path, field: str, value: str,
                                       message: str) -> None:
    before = (count_rows(db_path, "book"), count_rows(db_path, "book_tag"))
    page = app.get("/books/new")
    params = dict(GOOD_BOOK, csrf_token=csrf_from(page.text), **{field: value})
    res = app.post("/books/new", params, status=400)
    assert message in res.text
    assert 'class="field has-error"' in res.text
    assert "Zanzibarian clockwork detectives." in res.text  # the user's input is kept
    assert (count_rows(db_path, "book"), count_rows(db_path, "book_tag")) == before


def test_post_without_valid_csrf_token_is_403_and_writes_nothing(app: TestApp,
                                                                 db_path: Path) -> None:
    before = count_rows(db_path, "book")
    app.post("/books/new", GOOD_BOOK, status=403)  # no token, no cookie
    page = app.get("/books/new")  # now the browser has a cookie
    token = csrf_from(page.text)
    res = app.post("/books/new", dict(GOOD_BOOK, csrf_token=token[:-1] + "x"), status=403)
    assert "CSRF token missing or invalid" in res.text
    forged = "abc." + "0" * 32  # a well-formed token not signed with the app's secret
    app.set_cookie("csrftoken", forged)
    app.post("/books/new", dict(GOOD_BOOK, csrf_token=forged), status=403)
    assert count_rows(db_path, "book") == before
    app.post("/authors/new", {"name": "X", "csrf_token": "nope"}, status=403)
    app.post("/books/1/reviews", {"reviewer": "x", "rating": "5", "body": "b"}, status=403)
    assert count_rows(db_path, "author", "name = 'X'") == 0


def test_edit_book_updates_and_validates(app: TestApp, db_path: Path) -> None:
    page = app.get("/books/2/edit")
    form = page.forms["book-form"]
    assert form["isbn"].value == fetch_one(db_path, "SELECT isbn FROM book WHERE id = 2")[0]
    original = fetch_one(db_path, "SELECT title, price_cents FROM book WHERE id = 2")
    form["price"] = "-3"
    res = form.submit(status=400)
    assert "Price must be between 0 and 1000." in res.text
    assert fetch_one(db_path, "SELECT title, price_cents FROM book WHERE id = 2") == original
    form = res.forms["book-form"]
    form["price"] = "9.99"
    form["title"] = "Renamed By Test"
    form.submit(status=303)
    assert fetch_one(db_path, "SELECT title, price_cents FROM book WHERE id = 2") == (
        "Renamed By Test", 999)
    # the same ISBN stays valid for the book that owns it; another book's ISBN does not
    form = app.get("/books/2/edit").forms["book-form"]
    form["isbn"] = fetch_one(db_path, "SELECT isbn FROM book WHERE id = 3")[0]
    assert "ISBN already used by book #3." in form.submit(status=400).text


def test_create_author_and_validation(app: TestApp, db_path: Path) -> None:
    before = count_rows(db_path, "author")
    form = app.get("/authors/new").forms["author-form"]
    form["name"] = "  "
    form["born"] = "nineteen"
    res = form.submit(status=400)
    assert "Name is required." in res.text and "Year of birth must be a whole number." in res.text
    assert count_rows(db_path, "author") == before
    form = res.forms["author-form"]
    _fill(form, {"name": "Octavia Tester", "born": "1947", "country": "USA"})
    created = form.submit(status=303).follow()
    assert "<h1>Octavia Tester</h1>" in created.text
    assert fetch_one(db_path, "SELECT born, country FROM author WHERE name = 'Octavia Tester'") \
        == (1947, "USA")


def test_post_review_and_validation(app: TestApp, db_path: Path) -> None:
    before = count_rows(db_path, "review", "book_id = 5")
    form = app.get("/books/5").forms["review-form"]
    form["reviewer"] = ""
    form["body"] = "x" * 5000
    res = form.submit(status=400)
    assert "Your name is required." in res.text
    assert "Review must be at most 4000 characters." in res.text
    assert count_rows(db_path, "review", "book_id = 5") == before
    form = res.forms["review-form"]
    _fill(form, {"reviewer": "webtest", "rating": "4", "body": "Solid and surprising."})
    page = form.submit(status=303).follow()
    assert "Solid and surprising." in page.text
    assert count_rows(db_path, "review", "book_id = 5 AND reviewer = 'webtest' AND rating = 4") \
        == 1
    app.get("/books/5/reviews", status=405)


def test_json_review_endpoint(app: TestApp, db_path: Path) -> None:
    before = count_rows(db_path, "review")
    body = {"reviewer": "api", "rating": 5, "body": "Via JSON."}
    res = app.post("/api/books/7/reviews", json.dumps(body), content_type="application/json",
                   status=201)
    assert res.json["book_id"] == 7 and res.json["rating"] == 5
    assert fetch_one(db_path, "SELECT reviewer, body FROM review WHERE id = ?",
                     (res.json["id"],)) == ("api", "Via JSON.")
    bad = app.post("/api/books/7/reviews", json.dumps({"rating": 9}),
                   content_type="application/json", status=400).json
    assert set(bad["errors"]) == {"reviewer", "body", "rating"}
    app.post("/api/books/7/reviews", "{not json", content_type="application/json", status=400)
    app.post("/api/books/7/reviews", {"reviewer": "form"}, status=415)  # form posts refused
    app.post("/api/books/999999/reviews", json.dumps(body), content_type="application/json",
             status=404)
    assert count_rows(db_path, "review") == before + 1

"""The heavy pages: CSV export, regular-expression search and rankings by a Python score.

Their content is checked against the database file read with stdlib sqlite3; on mpsqlite, at
a scale where they are heavy, their statements move to worker processes after the first run.
"""

from __future__ import annotations

import csv
import io
import random
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from _site_support import WORKERS, count_rows, fetch_all
from webtest import TestApp

from example_site import HEAVY_MIX, heavy_mix, load_mix, make_app, pick
from example_site.db import make_engine
from example_site.models import GENRES
from example_site.scoring import make_score, score
from example_site.seed import seed


def _csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def test_csv_export_lists_every_book_with_its_aggregates(app: TestApp, db_path: Path) -> None:
    res = app.get("/export/books.csv")
    assert res.headers["Content-Type"].startswith("text/csv")
    assert res.headers["Content-Disposition"] == 'attachment; filename="books.csv"'
    rows = _csv_rows(res.body)
    assert rows[0] == ["id", "title", "author", "genre", "year", "price", "average_rating",
                       "reviews", "isbn"]
    expected = fetch_all(db_path, """
        SELECT b.id, b.title, a.name, b.genre, b.year, b.price_cents, avg(r.rating),
               count(r.id), b.isbn
        FROM book b JOIN author a ON a.id = b.author_id LEFT JOIN review r ON r.book_id = b.id
        GROUP BY b.id ORDER BY b.id""")
    assert len(rows) - 1 == len(expected) == count_rows(db_path, "book")
    for got, (bid, title, author, genre, year, cents, avg, n, isbn) in zip(rows[1:], expected):
        assert got == [str(bid), title, author, genre, str(year), f"{cents / 100:.2f}",
                       "" if avg is None else f"{avg:.2f}", str(n), isbn]
    assert any(r[6] == "" for r in rows[1:]) and any(r[6] != "" for r in rows[1:])


def test_csv_export_quotes_commas_quotes_and_newlines(app: TestApp, db_path: Path) -> None:
    title = 'He said "Hi, there"\nand left'
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("UPDATE book SET title = ? WHERE id = 3", (title,))
        conn.execute("UPDATE author SET name = 'Smith, Jr.' WHERE id = "
                     "(SELECT author_id FROM book WHERE id = 3)")
    body = app.get("/export/books.csv").body
    assert b'"He said ""Hi, there""\nand left","Smith, Jr."' in body
    (row,) = [r for r in _csv_rows(body) if r[0] == "3"]
    assert row[1:3] == [title, "Smith, Jr."]
    app.get("/export/other.csv", status=404)


def test_csv_export_streams_in_chunks(engine) -> None:
    from example_site.views.export import catalogue_csv

    chunks = list(catalogue_csv(engine, chunk=50))
    with engine.connect() as conn:
        books = conn.exec_driver_sql("SELECT count(*) FROM book").scalar()
    assert len(chunks) == -(-books // 50)  # one chunk per 50 books, the header in the first
    assert sum(c.count(b"\r\n") for c in chunks) >= books + 1


def _result_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<a href="/books/(\d+)" class="title">', html)]


def _regex_matches(db_path: Path, pattern: str) -> list[int]:
    """Ids of the books matching ``pattern`` in title or description, in the page's order."""
    rx = re.compile(pattern, re.IGNORECASE)
    rows = fetch_all(db_path, "SELECT id, title, description FROM book ORDER BY title, id")
    return [bid for bid, title, desc in rows if rx.search(title) or rx.search(desc or "")]


@pytest.mark.parametrize("pattern", [r"^the (silent|hidden) ", r"\bexile\b.*\bmusic\b",
                                     r"ORCHARD\.$"])
def test_regex_search_matches_titles_and_descriptions(app: TestApp, db_path: Path,
                                                      pattern: str) -> None:
    expected = _regex_matches(db_path, pattern)
    assert expected  # the pattern finds something in the test data
    res = app.get("/search", params={"q": pattern, "mode": "regex"})
    assert f"{len(expected):,} result" in res.text
    assert _result_ids(res.text) == expected[:20]
    assert '<option value="regex" selected>' in res.text
    if len(expected) > 20:
        second = app.get("/search", params={"q": pattern, "mode": "regex", "page": "2"})
        assert _result_ids(second.text) == expected[20:40]
        assert "mode=regex" in res.text.split('rel="next"')[0].rsplit("href=", 1)[1]


def test_regex_search_marks_matches_and_escapes_them(app: TestApp) -> None:
    res = app.get("/search", params={"q": r"\bmemory\b", "mode": "regex"})
    assert re.search(r"<mark>memory</mark>", res.text, re.IGNORECASE)
    words = app.get("/search", params={"q": "^the", "mode": "words"})  # not a regex here
    assert "<mark>" not in words.text.split("</form>", 1)[1].split("<ol")[0]


@pytest.mark.parametrize(("pattern", "message"), [
    ("(unclosed", "Invalid regular expression &#39;(unclosed&#39;: missing ), unterminated "
                  "subpattern at position 0."),
    ("a{2,1}", "Invalid regular expression &#39;a{2,1}&#39;: min repeat greater than max "
               "repeat at position 2."),
    ("x" * 201, "at most 200 are allowed"),
])
def test_invalid_regex_is_a_400_page_with_the_reason(app: TestApp, pattern: str,
                                                     message: str) -> None:
    res = app.get("/search", params={"q": pattern, "mode": "regex"}, status=400)
    assert 'id="search-error"' in res.text and message in res.text
    assert "Traceback" not in res.text and 'id="search-form"' in res.text


def _expected_ranking(db_path: Path, genre: str = "") -> list[int]:
    """Book ids by the Python score computed here, outside SQL, best first."""
    rows = fetch_all(db_path, """
        SELECT b.id, count(r.id), coalesce(sum(r.rating), 0),
               coalesce(sum(r.rating * r.rating), 0)
        FROM book b LEFT JOIN review r ON r.book_id = b.id
        WHERE ? = '' OR b.genre = ? GROUP BY b.id""", (genre, genre))
    return [bid for _, bid in sorted((-score(n, t, sq), bid) for bid, n, t, sq in rows)][:50]


def _ranked_ids(html: str) -> list[int]:
    table = html.split('id="rankings"', 1)[1]
    return [int(i) for i in re.findall(r'<td><a href="/books/(\d+)">', table)]


@pytest.mark.parametrize("genre", ["", "Poetry"])
def test_rankings_order_books_by_the_python_score(app: TestApp, db_path: Path,
                                                  genre: str) -> None:
    res = app.get("/rankings", params={"genre": genre} if genre else {})
    assert _ranked_ids(res.text) == _expected_ranking(db_path, genre)
    scores = [float(s) for s in re.findall(r'<td class="num score">([\d.]+)</td>', res.text)]
    assert len(scores) == min(50, len(_expected_ranking(db_path, genre)))
    assert scores == sorted(scores, reverse=True)
    assert "bookshop_score()" in res.text  # SQLite ranks in SQL with the Python function
    app.get("/rankings", params={"genre": "Cookbooks"}, status=404)


def test_score_prefers_more_good_reviews_and_starts_at_the_prior() -> None:
    # no reviews: the prior's mean 3.5 less 1.28 standard errors of sqrt(1 / 4)
    assert score(0, 0, 0) == pytest.approx(3.5 - 1.28 * 0.5)
    one_five, five_fives = score(1, 5, 25), score(5, 25, 125)
    assert five_fives > one_five > score(0, 0, 0) > score(3, 3, 3)
    assert one_five == pytest.approx(3.8 - 1.28 * (1.16 / 5) ** 0.5)
    assert make_score(prior_mean=3.0, z=0.0)(0, 0, 0) == 3.0


def test_navigation_links_the_heavy_pages(app: TestApp) -> None:
    nav = app.get("/").text.split("<nav>", 1)[1].split("</nav>", 1)[0]
    for href in ("/rankings", "/search?mode=regex", "/export/books.csv"):
        assert f'href="{href}"' in nav
    assert '<option value="regex" selected>' in app.get("/search?mode=regex").text


def test_heavy_mix_targets_all_answer(app: TestApp) -> None:
    assert sum(w for w, _ in heavy_mix()) == sum(w for w, _ in load_mix()) == 100
    assert [w for w, _ in HEAVY_MIX] == [w for w, _ in heavy_mix()]
    rng = random.Random(3)
    paths = {pick(heavy_mix(), rng) for _ in range(40)}
    assert {p.split("?")[0] for p in paths} == {"/export/books.csv", "/search", "/rankings"}
    for path in sorted(paths):
        assert app.get(path).status_int == 200, path


#: Books at which every heavy page's statement is judged heavy with a wide margin: the
#: export returns more than 1,000 rows, and the ranking and the regular-expression count call
#: a Python function ~4,000-8,000 times (the threshold is 2 ms of CPU).
HEAVY_SCALE = 4000


@pytest.fixture(scope="module")
def big_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("heavy") / "big.db"
    eng = make_engine(f"sqlite:///{path}", pool_size=1)
    seed(eng, HEAVY_SCALE)
    eng.dispose()
    return path


def test_heavy_pages_move_to_worker_processes_on_mpsqlite(big_template: Path,
                                                          tmp_path: Path) -> None:
    import mpsqlite

    path = tmp_path / "big.db"
    path.write_bytes(big_template.read_bytes())
    eng = make_engine(f"sqlite+mpsqlite:///{path}?workers={WORKERS}", pool_size=4)
    app = TestApp(make_app(eng, secret=b"t"))
    try:
        pages = ["/export/books.csv", "/rankings", "/search?q=%5Cbexile%5Cb&mode=regex"]
        first = [app.get(p).body for p in pages]
        (before,) = [p for p in mpsqlite.pool_status() if p["database"] == str(path)]
        assert before["offloaded_statements"] == 0 and before["workers"] == []
        assert before["heavy_statements"] >= 3
        again = [app.get(p).body for p in pages]
        (after,) = [p for p in mpsqlite.pool_status() if p["database"] == str(path)]
        assert after["offloaded_statements"] >= 3 and after["errors"] == 0
        assert after["workers"] and sum(w["statements"] for w in after["workers"]) >= 3
        assert again[0] == first[0]  # the CSV served by a worker is the same file
        assert _ranked_ids(again[1].decode()) == _ranked_ids(first[1].decode())
        assert _result_ids(again[2].decode()) == _result_ids(first[2].decode())
        shown = app.get("/api/status").json
        (pool,) = [p for p in shown["pools"] if p["database"] == str(path)]
        assert pool["offloaded_statements"] == after["offloaded_statements"]
    finally:
        eng.dispose()
        mpsqlite.shutdown()


def test_rankings_without_the_sql_function_rank_in_python(db_path: Path) -> None:
    from sqlalchemy import create_engine

    plain = create_engine(f"sqlite:///{db_path}")  # not make_engine: no bookshop_score()
    try:
        res = TestApp(make_app(plain, secret=b"t")).get("/rankings", params={"genre": GENRES[0]})
        assert "Computed in Python" in res.text
        assert _ranked_ids(res.text) == _expected_ranking(db_path, GENRES[0])
    finally:
        plain.dispose()

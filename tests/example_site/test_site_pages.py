"""Every GET page and JSON endpoint of the example site, on stock sqlite3 and on mpsqlite."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from _site_support import WORKERS, count_rows, fetch_all, fetch_one
from sqlalchemy import text
from webtest import TestApp


def test_home_shows_counts_and_latest_reviews(app: TestApp, db_path: Path) -> None:
    res = app.get("/")
    assert res.content_type == "text/html"
    assert f"{count_rows(db_path, 'book'):,}" in res.text
    assert f"{count_rows(db_path, 'review'):,}" in res.text
    reviewer, title = fetch_one(
        db_path, "SELECT r.reviewer, b.title FROM review r JOIN book b ON b.id = r.book_id "
        "ORDER BY r.created_at DESC, r.id DESC LIMIT 1")
    assert reviewer in res.text and title in res.text


def test_book_list_paginates_with_author_join(app: TestApp, db_path: Path) -> None:
    first = app.get("/books")
    titles = re.findall(r'<td><a href="/books/\d+">([^<]+)</a></td>', first.text)
    assert len(titles) == 25
    assert titles == sorted(titles)
    expected = [r[0] for r in _all(db_path, "SELECT title FROM book ORDER BY title, id LIMIT 25")]
    assert titles == expected
    author = fetch_one(db_path, "SELECT a.name FROM book b JOIN author a ON a.id = b.author_id "
                                "ORDER BY b.title, b.id LIMIT 1")[0]
    assert author in first.text
    pages = -(-count_rows(db_path, "book") // 25)
    assert f"Page 1 of {pages}" in first.text
    second = first.click(linkid=None, href=r"page=2", index=0)
    assert f"Page 2 of {pages}" in second.text
    assert not set(re.findall(r'<td><a href="/books/\d+">([^<]+)</a>', second.text)) & set(titles)


def _all(path: Path, sql: str) -> list[tuple]:
    return fetch_all(path, sql)


def test_book_list_filters_and_sorts(app: TestApp, db_path: Path) -> None:
    genre = fetch_one(db_path, "SELECT genre FROM book GROUP BY genre ORDER BY count(*) LIMIT 1")[0]
    res = app.get("/books", params={"genre": genre})
    n = count_rows(db_path, "book", "genre = ?", (genre,))
    ids = re.findall(r'<td><a href="/books/(\d+)">', res.text)
    assert len(ids) == min(n, 25)
    for book_id in ids:
        assert fetch_one(db_path, "SELECT genre FROM book WHERE id = ?", (book_id,))[0] == genre
    tagged = app.get("/books", params={"tag": "classic", "sort": "year"})
    years = [int(y) for y in re.findall(r'<td class="num">(\d{4})</td>', tagged.text)]
    assert years and years == sorted(years, reverse=True)
    for book_id in re.findall(r'<td><a href="/books/(\d+)">', tagged.text):
        assert count_rows(db_path, "book_tag JOIN tag ON tag.id = book_tag.tag_id",
                          "book_id = ? AND tag.name = 'classic'", (book_id,)) == 1
    best = app.get("/books", params={"sort": "rating"})
    top = re.findall(r'<td><a href="/books/(\d+)">', best.text)[0]
    best_avg = fetch_one(db_path, "SELECT max(a) FROM (SELECT avg(rating) a FROM review "
                                  "GROUP BY book_id) per_book")[0]
    top_avg = fetch_one(db_path, "SELECT avg(rating) FROM review WHERE book_id = ?", (top,))[0]
    assert top_avg == best_avg


def test_book_detail_shows_author_tags_and_reviews(app: TestApp, db_path: Path) -> None:
    book_id = fetch_one(db_path, "SELECT book_id FROM review GROUP BY book_id "
                                 "ORDER BY count(*) DESC, book_id LIMIT 1")[0]
    title, author = fetch_one(db_path, "SELECT b.title, a.name FROM book b JOIN author a "
                                       "ON a.id = b.author_id WHERE b.id = ?", (book_id,))
    res = app.get(f"/books/{book_id}")
    assert f"<h1>{title}</h1>" in res.text and author in res.text
    for (tag,) in _all(db_path, f"SELECT t.name FROM tag t JOIN book_tag bt ON bt.tag_id = t.id "
                                f"WHERE bt.book_id = {book_id}"):
        assert f">{tag}</a>" in res.text
    n = count_rows(db_path, "review", "book_id = ?", (book_id,))
    assert f"Reviews <span class=\"muted\">({n})</span>" in res.text
    assert res.text.count('<article class="review">') == min(n, 20)
    assert "review-form" in res.forms


def test_authors_list_and_detail(app: TestApp, db_path: Path) -> None:
    res = app.get("/authors")
    first = fetch_one(db_path, "SELECT id, name FROM author ORDER BY name, id LIMIT 1")
    assert first[1] in res.text
    detail = app.get(f"/authors/{first[0]}")
    assert f"<h1>{first[1]}</h1>" in detail.text
    n_books = count_rows(db_path, "book", "author_id = ?", (first[0],))
    assert f"Books ({n_books})" in detail.text
    country = fetch_one(db_path, "SELECT country FROM author WHERE id = ?", (first[0],))[0]
    filtered = app.get("/authors", params={"country": country})
    ids = re.findall(r'<td><a href="/authors/(\d+)">', filtered.text)
    assert ids and all(fetch_one(db_path, "SELECT country FROM author WHERE id = ?", (i,))[0]
                       == country for i in ids)


def test_report_aggregates_match_the_database(app: TestApp, db_path: Path) -> None:
    res = app.get("/report")
    for table_id in ("genres", "ratings", "top-authors", "tags", "decades", "reviews-per-year"):
        assert f'id="{table_id}"' in res.text
    data = app.get("/api/report").json
    by_rating = {r["rating"]: r["reviews"] for r in data["ratings"]}
    expected = dict(_all(db_path, "SELECT rating, count(*) FROM review GROUP BY rating"))
    assert by_rating == expected
    genres = {g["genre"]: g["books"] for g in data["genres"]}
    assert genres == dict(_all(db_path, "SELECT genre, count(*) FROM book GROUP BY genre"))
    assert sum(d["books"] for d in data["decades"]) == count_rows(db_path, "book")
    assert sum(y["reviews"] for y in data["reviews_per_year"]) == count_rows(db_path, "review")
    assert all(a["reviews"] >= 10 for a in data["top_authors"])
    avgs = [a["avg_rating"] for a in data["top_authors"]]
    assert avgs == sorted(avgs, reverse=True)


def test_unknown_pages_and_records_are_404(app: TestApp) -> None:
    for path in ("/nope", "/books/999999", "/books/abc", "/authors/0", "/books/1/nothing"):
        res = app.get(path, status=404)
        assert "404" in res.text and "Bookshop" in res.text  # the site's own error page
    assert app.get("/api/books/999999", status=404).json == {"error": "book not found"}
    assert app.get("/api/authors/999999", status=404).json == {"error": "author not found"}


def test_garbage_query_parameters_fall_back(app: TestApp) -> None:
    assert "Page 1 of" in app.get("/books", params={"page": "x"}).text
    assert "Page 1 of" in app.get("/books", params={"page": "-5", "sort": "bogus"}).text
    assert app.get("/api/books", params={"per_page": "100000"}).json["per_page"] == 100


def test_static_css_is_served(app: TestApp) -> None:
    res = app.get("/static/site.css")
    assert res.content_type == "text/css" and ".topbar" in res.text
    app.get("/static/missing.css", status=404)


def test_json_api_lists_and_details(app: TestApp, db_path: Path) -> None:
    assert "/api/books/<id>" in app.get("/api").json["endpoints"]
    books = app.get("/api/books", params={"page": 2, "per_page": 10}).json
    assert books["total"] == count_rows(db_path, "book") and len(books["items"]) == 10
    item = books["items"][0]
    title, author = fetch_one(db_path, "SELECT b.title, a.name FROM book b JOIN author a ON "
                                       "a.id = b.author_id WHERE b.id = ?", (item["id"],))
    assert (item["title"], item["author"]) == (title, author)
    detail = app.get(f"/api/books/{item['id']}").json
    assert detail["reviews"] == count_rows(db_path, "review", "book_id = ?", (item["id"],))
    assert len(detail["latest_reviews"]) == min(10, detail["reviews"])
    authors = app.get("/api/authors").json
    assert authors["total"] == count_rows(db_path, "author")
    one = app.get(f"/api/authors/{authors['items'][0]['id']}").json
    assert len(one["books"]) == authors["items"][0]["books"]


def _shown(html: str, name: str) -> str:
    """The number the status page shows in its ``data-field="name"`` element."""
    match = re.search(rf'data-field="{name}">([^<]*)<', html)
    assert match, f"the status page shows no {name}"
    return match.group(1).strip()


def _pool_section(html: str, database: str) -> str:
    (section,) = [part for part in html.split('<section class="card pool">')[1:]
                  if f"<code>{database}</code>" in part]
    return section


#: A read mpsqlite judges GIL-heavy (>= 1000 rows, fetched with fetchall); run twice, the
#: second run goes to a worker process.
HEAVY = text("with recursive r(i) as (select 1 union all select i + 1 from r where i < 5000) "
             "select i from r")


def test_status_page_reports_the_engine(app: TestApp, engine, db_path: Path) -> None:
    app.get("/books")
    res = app.get("/status")
    with engine.connect() as held:  # one connection checked out while the page is made
        held.execute(text("select 1"))
        data = app.get("/api/status").json
    assert data["requests"]["total"] >= 3
    sa = data["sqlalchemy_pool"]
    assert (sa["class"], sa["size"]) == ("QueuePool", 4)  # the conftest's pool_size
    assert sa["checked_out"] == 1 and sa["overflow"] == 0
    assert sa["open"] == sa["checked_in"] + 1 >= 1
    shown = [_shown(res.text, f"sa_{n}") for n in ("size", "checked_out", "overflow")]
    assert shown == ["4", "0", "0"]  # nothing was checked out while /status rendered
    if engine.url.get_driver_name() == "mpsqlite":
        assert data["uses_mpsqlite"] is True
        (pool,) = [p for p in data["pools"] if p["database"] == str(db_path)]
        assert pool["size"] == WORKERS
        # the site's reads are all small: nothing has been offloaded, no worker started
        assert pool["local_statements"] > 0
        assert (pool["offloaded_statements"], pool["workers"], pool["statements"]) == (0, [], 0)
        assert pool["offloaded_percent"] == 0.0
        assert "Not using mpsqlite" not in res.text
        section = _pool_section(res.text, str(db_path))
        assert "No worker processes running — every statement so far ran in the " \
               "application's own process." in section
        assert "<table" not in section
        assert int(_shown(section, "local_statements").replace(",", "")) > 0
        assert _shown(section, "offloaded_statements") == "0"
        assert _shown(section, "workers_running") == "0"
        assert _shown(section, "size") == str(WORKERS)
        assert _shown(section, "writer_busy") == "free"
    else:
        assert data["uses_mpsqlite"] is False and data["pools"] == []
        assert "Not using mpsqlite" in res.text


@pytest.mark.parametrize("engine", ["mpsqlite"], indirect=True)
def test_status_page_shows_writes_commits_and_workers(app: TestApp, engine,
                                                      db_path: Path) -> None:
    for pages in (100, 200):
        with engine.begin() as conn:
            conn.execute(text("update book set pages = :p where id = 1"), {"p": pages})
    for _ in range(2):  # the first run proves the read heavy, the second offloads it
        with engine.connect() as conn:
            assert len(conn.execute(HEAVY).all()) == 5000
    data = app.get("/api/status").json
    (pool,) = [p for p in data["pools"] if p["database"] == str(db_path)]
    assert pool["writer_grants"] >= 2 and pool["writer_waiting"] == 0
    assert pool["commits"] >= 2 and pool["fsyncs"] >= 1
    assert pool["commits_per_fsync"] == round(pool["commits"] / pool["fsyncs"], 2)
    assert pool["offloaded_statements"] >= 1 and pool["heavy_statements"] >= 1
    assert 0 < pool["offloaded_percent"] < 100
    pids = [w["pid"] for w in pool["workers"]]
    assert pids and os.getpid() not in pids
    assert {w["state"] for w in pool["workers"]} <= {"idle", "busy", "leased"}
    assert pool["idle"] + pool["busy"] + pool["leased"] == len(pids)

    section = _pool_section(app.get("/status").text, str(db_path))
    assert "No worker processes running" not in section
    rows = re.findall(r"<tr><td>(\d+)</td>", section)
    assert sorted(map(int, rows)) == sorted(pids)
    assert int(_shown(section, "offloaded_statements")) >= 1
    assert int(_shown(section, "writer_grants")) >= 2
    assert int(_shown(section, "commits")) >= 2 and int(_shown(section, "fsyncs")) >= 1
    assert _shown(section, "commits_per_fsync") == str(pool["commits_per_fsync"])
    assert _shown(section, "workers_running") == str(len(pids))
    assert _shown(section, "restarts") == "0"


def test_repeated_query_parameters_use_the_first(app: TestApp, db_path: Path) -> None:
    res = app.get("/books?genre=Poetry&genre=Travel&sort=year&sort=x")
    ids = re.findall(r'<td><a href="/books/(\d+)">', res.text)
    assert ids and all(fetch_one(db_path, "SELECT genre FROM book WHERE id = ?", (i,))[0]
                       == "Poetry" for i in ids)
    assert app.get("/search?q=magic&q=river").status_int == 200
    assert app.get("/api/books?tag=classic&tag=debut").json["total"] == count_rows(
        db_path, "book_tag JOIN tag ON tag.id = book_tag.tag_id", "tag.name = 'classic'")
    assert app.get("/authors?country=Japan&country=Peru").status_int == 200

"""``python -m example_site transfer``: the site's data moved to another database, then served.

The SQLite-to-SQLite cases run everywhere; the PostgreSQL ones need the server of
MPSQLITE_SITE_TEST_POSTGRES_URL (see ``_site_postgres``).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from _site_postgres import scratch_database
from _site_support import ROOT, SCALE, WORKERS, count_rows, csrf_from, fetch_one, run_site
from sqlalchemy import Engine, inspect, select, text

from example_site.__main__ import main
from example_site.db import has_fts, make_engine
from example_site.models import Author, Base, Book, Tag
from example_site.seed import counts_for

TABLES = ("author", "tag", "book", "book_tag", "review")


def _sqlite_rows(path: Path, table: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()


def _rows(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every site table, read through SQLAlchemy (so types compare across engines)."""
    with engine.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key))]
                for t in Base.metadata.sorted_tables}


def _mpsqlite_url(path: Path) -> str:
    return f"sqlite+mpsqlite:///{path}?workers={WORKERS}"


@pytest.fixture
def stop_mpsqlite() -> Iterator[None]:
    yield
    import mpsqlite

    mpsqlite.shutdown()


def test_transfer_to_a_new_sqlite_file_copies_every_row(db_path: Path, tmp_path: Path, capsys,
                                                        stop_mpsqlite) -> None:
    target = tmp_path / "copy.db"
    assert main(["transfer", "--from", _mpsqlite_url(db_path), "--to", f"sqlite:///{target}",
                 "--batch", "128"]) == 0
    out = capsys.readouterr().out
    counts = counts_for(SCALE)
    assert f"copied {sum(counts.values()):,} rows" in out
    assert f"review     {counts['reviews']:>10,} rows" in out
    for table in TABLES:
        assert _sqlite_rows(target, table) == _sqlite_rows(db_path, table), table
    # the search index is rebuilt on the target, not copied
    assert count_rows(target, "book_fts") == counts["books"]
    engine = make_engine(f"sqlite:///{target}")
    try:
        assert has_fts(engine)
    finally:
        engine.dispose()


def test_transfer_refuses_a_target_that_holds_data(db_path: Path, tmp_path: Path,
                                                   capsys) -> None:
    source = tmp_path / "other.db"
    with closing(sqlite3.connect(source)) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    before = _sqlite_rows(db_path, "book")
    assert main(["transfer", "--from", f"sqlite:///{source}", "--to", f"sqlite:///{db_path}"]) == 1
    assert "the source is not an example_site database (no table author" in capsys.readouterr().err
    empty = tmp_path / "empty.db"
    assert main(["transfer", "--from", f"sqlite:///{empty}", "--to", f"sqlite:///{db_path}"]) == 1
    assert "not an example_site database" in capsys.readouterr().err
    assert main(["transfer", "--from", f"sqlite:///{db_path}", "--to", f"sqlite:///{db_path}"]) == 1
    err = capsys.readouterr().err
    assert "nothing was committed to the target" in err
    assert "already holds site data (tables author, tag, book, book_tag, review)" in err
    assert main(["transfer", "--from", "not a url", "--to", f"sqlite:///{db_path}"]) == 1
    assert "--from: Could not parse SQLAlchemy URL" in capsys.readouterr().err
    assert _sqlite_rows(db_path, "book") == before


def _run_transfer(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "example_site", "transfer", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def _post_author(base: str, name: str) -> int:
    """Create an author through the site's form (CSRF cookie and token); return its new id."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(base + "/authors/new", timeout=30) as res:
        token = csrf_from(res.read().decode())
    form = urllib.parse.urlencode({"name": name, "born": "1950", "country": "Chile",
                                   "csrf_token": token}).encode()
    with opener.open(base + "/authors/new", data=form, timeout=30) as res:  # follows the 303
        assert f"<h1>{name}</h1>" in res.read().decode()
        return int(res.url.rsplit("/", 1)[1])


def _post_review(base: str, book_id: int) -> dict:
    body = json.dumps({"reviewer": "pg", "rating": 4, "body": "Moved house fine."}).encode()
    req = urllib.request.Request(f"{base}/api/books/{book_id}/reviews", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        assert res.status == 201
        return json.load(res)


def test_transfer_to_postgresql_then_serve_and_write(db_path: Path, tmp_path: Path) -> None:
    with scratch_database("mpsqlite_transfer") as url:
        to = url.render_as_string(hide_password=False)
        done = _run_transfer("--from", _mpsqlite_url(db_path), "--to", to)
        assert done.returncode == 0, done.stderr
        assert "***@" in done.stdout and url.password not in done.stdout
        source, target = make_engine(f"sqlite:///{db_path}"), make_engine(to, pool_size=1)
        try:
            expected, got = _rows(source), _rows(target)
            assert {t: len(r) for t, r in got.items()} == {t: len(r) for t, r in expected.items()}
            assert len(got["review"]) == counts_for(SCALE)["reviews"]
            assert got == expected  # every row, every column (dates as datetimes on both)
        finally:
            source.dispose()

        last = {t: fetch_one(db_path, f"SELECT max(id) FROM {t}")[0]
                for t in ("author", "book", "review", "tag")}
        with run_site(tmp_path, "--url", to, "--seed-rows", "40") as (base, log):
            with urllib.request.urlopen(base + "/api/books", timeout=30) as res:
                assert json.load(res)["total"] == SCALE  # the copied data, not a new seed
            review = _post_review(base, 7)
            author_id = _post_author(base, "Transfer Tester")
        assert "seeding" not in log.read_text()
        assert review["id"] == last["review"] + 1 and author_id == last["author"] + 1
        try:
            with target.begin() as conn:
                tag_id = conn.execute(Tag.__table__.insert().values(name="moved")
                                      .returning(Tag.id)).scalar_one()
                book_id = conn.execute(Book.__table__.insert().values(
                    title="New on PG", author_id=author_id, year=2024, genre="Travel",
                    price_cents=999, pages=99, isbn="pg-1", description="").returning(
                    Book.id)).scalar_one()
                assert conn.scalar(select(Author.name).where(Author.id == author_id)) \
                    == "Transfer Tester"
            assert (tag_id, book_id) == (last["tag"] + 1, last["book"] + 1)
        finally:
            target.dispose()


def test_transfer_rolls_back_when_postgresql_refuses_a_row(db_path: Path, capsys,
                                                           stop_mpsqlite) -> None:
    with closing(sqlite3.connect(db_path)) as conn, conn:  # SQLite's foreign keys are off
        conn.execute("INSERT INTO review (book_id, reviewer, rating, body, created_at) "
                     "VALUES (999999, 'ghost', 3, 'of a lost book', '2020-01-01 00:00:00')")
    with scratch_database("mpsqlite_transfer") as url:
        to = url.render_as_string(hide_password=False)
        assert main(["transfer", "--from", _mpsqlite_url(db_path), "--to", to]) == 1
        err = capsys.readouterr().err
        assert "nothing was committed to the target" in err
        assert "refused rows 1-" in err and "of table review" in err
        assert "ForeignKeyViolation" in err or "foreign key" in err
        target = make_engine(to, pool_size=1)
        try:
            assert inspect(target).get_table_names() == []  # the schema went with the rows
            with target.connect() as conn:
                assert conn.execute(text("select 1")).scalar_one() == 1
        finally:
            target.dispose()

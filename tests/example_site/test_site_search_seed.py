"""Full-text search (FTS5 and the LIKE fallback), deterministic seeding and the load mix."""

from __future__ import annotations

import hashlib
import random
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from _site_support import SCALE, count_rows
from sqlalchemy import Engine
from webtest import TestApp

from example_site import LOAD_MIX, WRITE_MIX, load_mix, make_app, pick, write_mix
from example_site.db import has_fts, make_engine
from example_site.seed import counts_for, ensure_seeded, seed


def _matching_ids(path: Path, words: list[str]) -> set[int]:
    """Books whose title, description or author name contain every word (case-insensitive)."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT b.id, lower(b.title || ' ' || b.description || ' ' || a.name) "
                            "FROM book b JOIN author a ON a.id = b.author_id").fetchall()
    return {i for i, text in rows if all(w in text for w in words)}


def _result_ids(app: TestApp, q: str) -> tuple[set[int], int]:
    ids: set[int] = set()
    page, total = 1, 0
    while True:
        data = app.get("/api/search", params={"q": q, "page": page}).json
        ids |= {item["id"] for item in data["items"]}
        total = data["total"]
        if page >= data["pages"]:
            return ids, total
        page += 1


@pytest.mark.parametrize("q", ["lighthouse", "magic garden", "OCEAN"])
def test_fts_search_finds_exactly_the_matching_books(app: TestApp, engine: Engine,
                                                     db_path: Path, q: str) -> None:
    assert has_fts(engine)
    words = q.lower().split()
    expected = _matching_ids(db_path, words)
    assert expected, "the seed data should contain these words"
    ids, total = _result_ids(app, q)
    assert ids == expected and total == len(expected)
    html = app.get("/search", params={"q": q}).text
    assert f"{len(expected)} result" in html and "FTS5" in html
    assert "<mark>" in html


def test_search_input_is_sanitised_and_escaped(app: TestApp) -> None:
    for q in ('"', "AND OR NOT", "*", "title:(x", "a' OR 1=1 --"):
        app.get("/search", params={"q": q})  # no FTS syntax error reaches the user
    res = app.get("/search", params={"q": "<script>alert(1)</script>"})
    assert "<script>alert(1)" not in res.text and "&lt;script&gt;" in res.text
    assert app.get("/search").text.count('class="results"') == 0


def test_like_fallback_without_fts(db_path: Path) -> None:
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute("DROP TABLE book_fts")
        conn.commit()
    engine = make_engine(f"sqlite:///{db_path}")
    try:
        assert not has_fts(engine)
        app = TestApp(make_app(engine))
        expected = _matching_ids(db_path, ["river", "war"])
        ids, total = _result_ids(app, "river war")
        assert ids == expected and total == len(expected) > 0
        assert "LIKE" in app.get("/search", params={"q": "river"}).text
        assert _result_ids(app, "100%")[1] == 0  # % is matched literally
    finally:
        engine.dispose()


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with closing(sqlite3.connect(path)) as conn:
        for table in ("author", "book", "book_tag", "review", "tag"):
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                h.update(repr(row).encode())
    return h.hexdigest()


def test_seed_is_deterministic_and_counts_match(tmp_path: Path, db_path: Path) -> None:
    fresh = tmp_path / "again.db"
    engine = make_engine(f"sqlite:///{fresh}")
    stages: list[tuple[str, int, int]] = []
    try:
        assert ensure_seeded(engine, SCALE, lambda *a: stages.append(a)) is True
        assert ensure_seeded(engine, SCALE) is False  # second run keeps the data
    finally:
        engine.dispose()
    assert _digest(fresh) == _digest(db_path)
    counts = counts_for(SCALE)
    for table, key in (("author", "authors"), ("book", "books"), ("review", "reviews"),
                       ("book_tag", "book_tags"), ("tag", "tags")):
        assert count_rows(fresh, table) == counts[key]
        assert (key, counts[key], counts[key]) in stages
    assert count_rows(fresh, "book_fts") == counts["books"]


def test_seed_through_mpsqlite(tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "mp.db"
    engine = make_engine(f"sqlite+mpsqlite:///{path}?workers=2")
    try:
        seed(engine, SCALE)
    finally:
        engine.dispose()
        import mpsqlite

        mpsqlite.shutdown()
    assert _digest(path) == _digest(db_path)


def test_load_mix_targets_all_answer(app: TestApp) -> None:
    rng = random.Random(1)
    mix = load_mix(SCALE)
    assert sum(w for w, _ in mix) == 100
    for _, target in mix:
        path = target(rng) if callable(target) else target
        res = app.get(path)
        assert res.status_int == 200, path
    before = app.get("/api/status").json["requests"]["errors"]
    for _ in range(30):
        app.get(pick(mix, rng))
    for _, target in write_mix(SCALE):
        path, body = target(rng)
        app.post_json(path, body, status=201)
    assert app.get("/api/status").json["requests"]["errors"] == before


def test_default_mix_is_deterministic() -> None:
    def draw(mix: list) -> list[str]:
        rng = random.Random(42)
        return [str(pick(mix, rng)) for _ in range(50)]

    assert draw(LOAD_MIX) == draw(LOAD_MIX)
    assert all(re.match(r"^/", p) for p in draw(LOAD_MIX))
    path, body = WRITE_MIX[0][1](random.Random(3))
    assert re.fullmatch(r"/api/books/\d+/reviews", path) and 1 <= body["rating"] <= 5

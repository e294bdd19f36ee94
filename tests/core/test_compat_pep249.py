"""PEP 249 details: the type objects mpsqlite adds, and where PEP 249 leaves room, sqlite3's
choices (mpsqlite's connection and cursor are sqlite3's own subclasses)."""

from __future__ import annotations

import sqlite3

import pytest

from tests.core._heavy import fill_big, offload

_TYPE_OBJECTS = ["STRING", "BINARY", "NUMBER", "DATETIME", "ROWID"]


def test_threadsafety_is_sqlite3s(mpsqlite):
    """Each connection is one sqlite3 connection: its thread safety is sqlite3's."""
    assert mpsqlite.threadsafety == sqlite3.threadsafety


def test_version_info_present(mpsqlite):
    assert isinstance(mpsqlite.version_info, tuple)


@pytest.mark.parametrize("name", _TYPE_OBJECTS)
def test_type_object_exists(mpsqlite, name):
    assert getattr(mpsqlite, name) is not None


def test_type_objects_are_distinct(mpsqlite):
    objects = [getattr(mpsqlite, name) for name in _TYPE_OBJECTS]
    for i, first in enumerate(objects):
        for second in objects[i + 1 :]:
            assert first != second


def test_fetch_before_execute_is_empty(conn):
    """sqlite3 answers a fetch before any execute with no rows, not an error."""
    cur = conn.cursor()
    assert cur.fetchone() is None
    assert cur.fetchmany() == []
    assert cur.fetchmany(5) == []
    assert cur.fetchall() == []
    assert cur.description is None
    assert cur.rowcount == -1


def test_cursor_usable_after_an_empty_fetch(conn):
    cur = conn.cursor()
    assert cur.fetchall() == []
    assert cur.execute("select 3").fetchall() == [(3,)]


def test_nextset_as_sqlite3(dbapi, conn):
    """nextset is optional in PEP 249; sqlite3's cursor has none, nor then has mpsqlite's."""
    cur = conn.execute("select 1")
    assert hasattr(cur, "nextset") is hasattr(sqlite3.Cursor, "nextset")
    assert cur.fetchall() == [(1,)]


def test_setoutputsize_and_setinputsizes(conn):
    cur = conn.cursor()
    assert cur.setinputsizes([None, 10]) is None
    assert cur.setoutputsize(1000) is None
    assert cur.setoutputsize(1000, 1) is None


def test_row_is_exported(dbapi, conn):
    conn.row_factory = dbapi.Row
    row = conn.execute("select 1 as a").fetchone()
    assert isinstance(row, dbapi.Row)
    assert row["A"] == 1


def test_connection_and_cursor_are_sqlite3s(dbapi, conn):
    assert isinstance(conn, sqlite3.Connection)
    assert isinstance(conn.cursor(), sqlite3.Cursor)
    assert dbapi.Row is sqlite3.Row
    assert dbapi.OperationalError is sqlite3.OperationalError


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_argument_sets_pool_size(mp_connect, workers):
    """``workers`` is the most worker processes the database may use; none starts at connect."""
    conn = mp_connect(workers=workers)
    status = conn.pool_status()
    assert status["size"] == workers
    assert status["workers"] == []
    fill_big(conn)
    offload(conn, "select x from big")
    assert len(conn.pool_status()["workers"]) == 1

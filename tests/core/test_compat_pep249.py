"""Where PEP 249 asks for more than sqlite3 gives, mpsqlite gives it (mpsqlite only)."""

from __future__ import annotations

import pytest

_TYPE_OBJECTS = ["STRING", "BINARY", "NUMBER", "DATETIME", "ROWID"]


@pytest.fixture
def mconn(mp_connect):
    """An mpsqlite connection to the test file."""
    return mp_connect()


def test_threadsafety_is_two(mpsqlite):
    """Threads may share the module and connections (contract of mpsqlite)."""
    assert mpsqlite.threadsafety == 2


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


@pytest.mark.parametrize("method", ["fetchone", "fetchmany", "fetchall"])
def test_fetch_before_execute_raises(mconn, mpsqlite, method):
    cur = mconn.cursor()
    with pytest.raises(mpsqlite.Error):
        getattr(cur, method)()


def test_fetch_before_execute_raises_programming_error(mconn, mpsqlite):
    with pytest.raises(mpsqlite.ProgrammingError):
        mconn.cursor().fetchone()


def test_cursor_usable_after_fetch_error(mconn, mpsqlite):
    cur = mconn.cursor()
    with pytest.raises(mpsqlite.Error):
        cur.fetchall()
    assert cur.execute("select 3").fetchall() == [(3,)]


def test_nextset_returns_none(mconn):
    cur = mconn.execute("select 1")
    assert cur.nextset() is None
    assert cur.fetchall() == [(1,)]


def test_setoutputsize_and_setinputsizes(mconn):
    cur = mconn.cursor()
    assert cur.setinputsizes([None, 10]) is None
    assert cur.setoutputsize(1000) is None
    assert cur.setoutputsize(1000, 1) is None


def test_row_is_exported(mpsqlite, mconn):
    mconn.row_factory = mpsqlite.Row
    row = mconn.execute("select 1 as a").fetchone()
    assert isinstance(row, mpsqlite.Row)
    assert row["A"] == 1


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_argument_sets_pool_size(mp_connect, workers):
    status = mp_connect(workers=workers).pool_status()
    assert status["size"] == workers
    assert len(status["workers"]) == workers

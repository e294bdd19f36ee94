"""mpsqlite's own connect() options (mpsqlite only): wal, offload, workers, their checks,
sqlite3's arguments passed on as sqlite3 takes them, and interrupt() reaching a worker."""

from __future__ import annotations

import sqlite3
import sys
import threading
from contextlib import closing

import pytest

from tests.core._heavy import (
    BIG,
    COUNT_SPIN,
    fill_big,
    mark_heavy,
    offload,
    spinner,
    wait_for_file,
)
from tests.core._procs import worker_pids


def test_file_database_switched_to_wal_by_default(mp_connect, db_path):
    conn = mp_connect()
    conn.execute("create table t(x)")
    assert conn.execute("pragma journal_mode").fetchone() == ("wal",)
    with closing(sqlite3.connect(str(db_path))) as check:
        assert check.execute("pragma journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize("first", ["script", "begin", "journal_mode"])
def test_a_new_file_goes_to_wal_at_its_first_write(mp_connect, db_path, first):
    """Not at connect (the file has no page until its first write), but before that write
    where it can, after it for a script; a journal mode the application sets is kept."""
    conn = mp_connect()
    assert conn.execute("pragma journal_mode").fetchone() == ("delete",)
    if first == "script":
        conn.executescript("pragma page_size=8192; create table t(x); insert into t values (1)")
    elif first == "begin":
        conn.execute("begin")
        conn.execute("create table t(x)")
        conn.commit()
    else:
        assert conn.execute("pragma journal_mode=truncate").fetchone() == ("truncate",)
        conn.execute("create table t(x)")
        conn.commit()
    expected = "truncate" if first == "journal_mode" else "wal"
    assert conn.execute("pragma journal_mode").fetchone() == (expected,)
    with closing(sqlite3.connect(str(db_path))) as check:  # only WAL stays with the file
        assert check.execute("pragma journal_mode").fetchone() == (
            "wal" if expected == "wal" else "delete",)
    level = sqlite3.Cursor(conn).execute("pragma synchronous").fetchone()
    assert level == ((2,) if expected != "wal" else (1,))  # group commit runs at NORMAL
    assert conn.execute("pragma synchronous").fetchone() == (2,)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="autocommit= is new in Python 3.12")
def test_a_new_file_under_autocommit_false_goes_to_wal_with_the_next_connection(
        mp_connect, db_path):
    """Its transaction never ends, and SQLite changes a journal mode only outside one."""
    conn = mp_connect(autocommit=False)
    conn.execute("create table t(x)")
    conn.execute("insert into t values (1)")
    conn.commit()
    assert conn.in_transaction
    assert conn.execute("pragma journal_mode").fetchone() == ("delete",)
    assert sqlite3.Cursor(conn).execute("pragma synchronous").fetchone() == (2,)  # FULL
    conn.close()
    later = mp_connect(autocommit=False)
    assert later.execute("pragma journal_mode").fetchone() == ("wal",)
    assert later.execute("select x from t").fetchall() == [(1,)]


def test_wal_false_keeps_rollback_journal(mp_connect, db_path):
    conn = mp_connect(wal=False)
    conn.execute("create table t(x)")
    assert conn.execute("pragma journal_mode").fetchone() == ("delete",)
    with closing(sqlite3.connect(str(db_path))) as check:
        assert check.execute("pragma journal_mode").fetchone() == ("delete",)


def test_wal_false_database_works_for_reads_writes_and_offload(mp_connect):
    conn = mp_connect(wal=False)
    fill_big(conn)
    other = mp_connect(wal=False)
    assert other.execute("select count(*), sum(x) from big").fetchone() == (BIG, sum(range(BIG)))
    assert offload(other, "select x from big order by x") == [(i,) for i in range(BIG)]
    conn.execute("insert into big values (-1, 'new')")
    conn.commit()
    assert len(other.execute("select x from big order by x").fetchall()) == BIG + 1


def test_offload_false_keeps_every_read_in_the_caller(mp_connect):
    conn = mp_connect(offload=False)
    fill_big(conn)
    for _ in range(3):
        assert len(conn.execute("select x from big").fetchall()) == BIG
    status = conn.pool_status()
    assert status["offloaded_statements"] == 0
    assert status["workers"] == []


def test_offloaded_reads_see_every_commit_at_once(mp_connect):
    """A read on a worker sees every commit made before it starts, as a local one does."""
    writer = mp_connect()
    fill_big(writer)
    reader = mp_connect()
    sql = "select x from big"
    mark_heavy(reader, sql)
    for i in range(1, 6):
        writer.execute("insert into big values (?, 'more')", (-i,))
        writer.commit()
        before = reader.pool_status()["offloaded_statements"]
        assert len(reader.execute(sql).fetchall()) == BIG + i
        assert reader.pool_status()["offloaded_statements"] == before + 1


def test_memory_database_gets_no_pool_even_if_workers_asked(mp_connect):
    assert mp_connect(":memory:", workers=3).pool_status()["size"] == 0


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2", True])
def test_workers_must_be_a_positive_integer(mpsqlite, db_path, workers):
    with pytest.raises(ValueError, match="workers"):
        mpsqlite.connect(str(db_path), workers=workers)


@pytest.mark.parametrize("seconds", [0, -1])
def test_max_write_seconds_must_be_positive(mpsqlite, db_path, seconds):
    with pytest.raises(ValueError, match="max_write_seconds"):
        mpsqlite.connect(str(db_path), max_write_seconds=seconds)


def test_unknown_option_is_a_type_error_like_sqlite3(dbapi, db_path):
    with pytest.raises(TypeError):
        dbapi.connect(str(db_path), no_such_option=1)


def test_check_same_thread_defaults_to_true_as_in_sqlite3(connect):
    conn = connect()
    out: list = []

    def _use() -> None:
        try:
            conn.execute("select 1")
            out.append("no error")
        except sqlite3.ProgrammingError as exc:
            out.append(str(exc))

    thread = threading.Thread(target=_use)
    thread.start()
    thread.join(30)
    assert len(out) == 1 and "thread" in out[0]


def test_positional_arguments_as_sqlite3(dbapi, db_path):
    """connect(database, timeout, detect_types, isolation_level, check_same_thread, ...)."""
    conn = dbapi.connect(str(db_path), 0.5, 0, None, False)
    try:
        assert conn.isolation_level is None
        conn.execute("create table t(x)")
        conn.execute("insert into t values (1)")
        assert not conn.in_transaction  # autocommit, as isolation_level=None asks
        out: list = []
        thread = threading.Thread(target=lambda: out.append(conn.execute("select 1").fetchone()))
        thread.start()
        thread.join(30)
        assert out == [(1,)]  # check_same_thread=False
    finally:
        conn.close()


def test_factory_gets_the_arguments_as_sqlite3_gives_them(dbapi, db_path):
    seen: dict = {}

    class Recording(dbapi.Connection):
        def __init__(self, *args, **kwargs):
            seen["args"], seen["kwargs"] = args, dict(kwargs)
            super().__init__(*args, **kwargs)

    conn = dbapi.connect(str(db_path), timeout=2.0, factory=Recording)
    try:
        assert type(conn) is Recording
        assert seen["args"] == (str(db_path),)
        assert seen["kwargs"] == {"timeout": 2.0, "factory": Recording}
        conn.execute("create table t(x)")
    finally:
        conn.close()


def test_uri_with_escaped_query_characters(mp_connect, tmp_path):
    import urllib.parse

    uri = f"file:{urllib.parse.quote(str(tmp_path))}/a%3Fb%23c.db?mode=rwc"
    conn = mp_connect(uri, uri=True)
    fill_big(conn)
    assert len(offload(conn, "select x from big")) == BIG
    assert (tmp_path / "a?b#c.db").exists()


@pytest.mark.parametrize(("database", "uri", "expected"), [
    ("file:/d/a%25b%3F.db?immutable=1", True, "/d/a%b?.db"),
    ("file:///d/x.db?mode=ro&immutable=on#frag", True, "/d/x.db"),
    ("file://localhost/d/x.db?immutable=TRUE", True, "/d/x.db"),
    (b"file:rel.db?immutable=1", True, "rel.db"),
    ("file:x.db?immutable=0", True, None),
    ("file:x.db?mode=ro", True, None),
    ("file:x.db?immutable=1", False, None),  # a plain path that starts with "file:"
    ("file://elsewhere/x.db?immutable=1", True, None),  # SQLite refuses a remote host
    ("file:?immutable=1", True, None),  # a private temporary database
])
def test_the_file_an_immutable_uri_names(database, uri, expected):
    from mpsqlite._durability import _immutable_file

    assert _immutable_file(database, uri) == expected


def test_read_only_uri_is_served_and_refuses_writes_as_sqlite3(mp_connect, db_path):
    setup = mp_connect()
    fill_big(setup)
    setup.close()
    uri = f"file:{db_path}?mode=ro"
    conn = mp_connect(uri, uri=True)
    assert len(offload(conn, "select x from big")) == BIG
    with closing(sqlite3.connect(uri, uri=True)) as reference:
        with pytest.raises(sqlite3.OperationalError) as expected:
            reference.execute("insert into big values (-1, 'x')")
        with pytest.raises(sqlite3.OperationalError) as got:
            conn.execute("insert into big values (-1, 'x')")
        assert str(got.value) == str(expected.value)
        assert conn.in_transaction == reference.in_transaction
    conn.rollback()
    assert conn.pool_status()["writer_busy"] is False


def test_interrupt_reaches_a_statement_on_a_worker(mp_connect, tmp_path):
    """interrupt() from another thread stops an offloaded query inside its worker process;
    the worker survives it."""
    conn = mp_connect(check_same_thread=False)
    conn.create_function("spin", 2, spinner())
    assert conn.execute(COUNT_SPIN, (2000, "")).fetchone() == (2000,)  # heavy by CPU
    assert conn.pool_status()["heavy_statements"] == 1
    assert conn.execute(COUNT_SPIN, (2000, "")).fetchone() == (2000,)  # on a worker
    assert conn.pool_status()["offloaded_statements"] == 1
    (pid,) = worker_pids(conn)
    marker = tmp_path / "running"
    errors: list[BaseException] = []

    def _endless() -> None:
        try:
            conn.execute(COUNT_SPIN, (10**12, str(marker))).fetchall()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    runner = threading.Thread(target=_endless, daemon=True)
    runner.start()
    assert int(wait_for_file(marker)) == pid  # running, in the worker
    conn.interrupt()
    runner.join(30)
    assert not runner.is_alive(), "interrupt() did not reach the worker"
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.OperationalError)
    assert "interrupted" in str(errors[0])
    assert conn.execute(COUNT_SPIN, (2000, "")).fetchone() == (2000,)
    status = conn.pool_status()
    assert status["restarts"] == 0 and worker_pids(conn) == {pid}
    # three runs reached the worker; the interrupted one is its error, not a served read
    assert (status["statements"], status["errors"], status["offloaded_statements"]) == (3, 1, 2)

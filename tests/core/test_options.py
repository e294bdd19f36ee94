"""mpsqlite's own connect() options (mpsqlite only): wal, local_reads, workers on :memory:,
and interrupt() reaching a worker process."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from tests.core._procs import assert_interrupt_stops_endless_query


def test_file_database_switched_to_wal_by_default(mp_connect, db_path):
    conn = mp_connect()
    conn.execute("create table t(x)")
    assert conn.execute("pragma journal_mode").fetchone() == ("wal",)
    with closing(sqlite3.connect(str(db_path))) as check:
        assert check.execute("pragma journal_mode").fetchone() == ("wal",)


def test_wal_false_keeps_rollback_journal(mp_connect, db_path):
    conn = mp_connect(wal=False)
    conn.execute("create table t(x)")
    assert conn.execute("pragma journal_mode").fetchone() == ("delete",)
    with closing(sqlite3.connect(str(db_path))) as check:
        assert check.execute("pragma journal_mode").fetchone() == ("delete",)


def test_wal_false_pool_works_for_reads_and_writes(mp_connect):
    conn = mp_connect(wal=False)
    conn.execute("create table t(x)")
    conn.executemany("insert into t values (?)", [(i,) for i in range(10)])
    conn.commit()
    other = mp_connect(wal=False)
    assert other.execute("select count(*), sum(x) from t").fetchone() == (10, 45)


def test_local_reads_off_reads_see_commits(mp_connect):
    writer = mp_connect()
    writer.execute("create table t(x)")
    writer.commit()
    reader = mp_connect(local_reads=False)
    for i in range(1, 6):
        writer.execute("insert into t values (?)", (i,))
        writer.commit()
        assert reader.execute("select count(*) from t").fetchone() == (i,)


def test_local_reads_on_reads_see_commits_at_once(mp_connect):
    """Reads in the calling thread see every commit made before they start."""
    writer = mp_connect(local_reads=False)
    writer.execute("create table t(x)")
    writer.commit()
    reader = mp_connect()
    for i in range(1, 30):
        writer.execute("insert into t values (?)", (i,))
        writer.commit()
        assert reader.execute("select count(*) from t").fetchone() == (i,)


def test_memory_database_gets_one_worker_even_if_more_asked(mp_connect):
    assert mp_connect(":memory:", workers=3).pool_status()["size"] == 1


def test_interrupt_reaches_statement_in_worker(mp_connect):
    """interrupt() from another thread stops a query running in a worker process."""
    conn = mp_connect(local_reads=False)
    assert_interrupt_stops_endless_query(conn)
    assert conn.pool_status()["restarts"] == 0

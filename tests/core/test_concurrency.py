"""Many threads on mpsqlite: shared and per-thread connections, queued writers, exact
read-modify-write transactions, isolation, and statements spread over worker processes."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing

import pytest

pytestmark = pytest.mark.timeout(180)

THREADS = 16
ROWS_PER_THREAD = 20


def _run_threads(count: int, target: Callable[[int], None]) -> list[BaseException]:
    """Run ``target(i)`` in ``count`` threads started together; return what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def _body(i: int) -> None:
        try:
            start.wait()
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=_body, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "threads still running: a hang"
    return errors


def _slow_pid() -> int:
    """UDF: the pid of the process running the statement, slow enough to overlap calls."""
    time.sleep(0.05)
    return os.getpid()


@pytest.fixture
def table(mp_connect):
    """An mpsqlite connection with a committed table ``t(tid, n)``."""
    conn = mp_connect()
    conn.execute("create table t(tid integer, n integer)")
    conn.commit()
    return conn


def _committed_count(db_path) -> int:
    with closing(sqlite3.connect(str(db_path))) as check:
        return check.execute("select count(*) from t").fetchone()[0]


def test_pool_status_shape(mpsqlite, mp_connect):
    conn = mp_connect()
    conn.execute("create table shape(x)")  # a write always runs in a worker
    status = conn.pool_status()
    assert status["size"] == 2
    assert len(status["workers"]) == 2
    for worker in status["workers"]:
        assert set(worker) >= {"pid", "state", "statements", "errors"}
        assert worker["state"] in ("idle", "busy", "pinned")
    for key in (
        "database",
        "waiting",
        "writer_waiting",
        "writer_busy",
        "statements",
        "errors",
        "restarts",
    ):
        assert key in status
    assert status["statements"] >= 1
    assert status in mpsqlite.pool_status()


def test_shared_connection_many_threads(table, db_path):
    def _work(tid: int) -> None:
        for k in range(1, ROWS_PER_THREAD + 1):
            table.execute("insert into t values (?, ?)", (tid, k))
            table.commit()
            (mine,) = table.execute("select count(*) from t where tid = ?", (tid,)).fetchone()
            assert mine == k

    assert _run_threads(THREADS, _work) == []
    assert table.execute("select count(*) from t").fetchone() == (THREADS * ROWS_PER_THREAD,)
    assert _committed_count(db_path) == THREADS * ROWS_PER_THREAD


def test_shared_autocommit_connection_many_threads(mp_connect, db_path):
    conn = mp_connect(isolation_level=None)
    conn.execute("create table t(tid integer, n integer)")

    def _work(tid: int) -> None:
        for k in range(ROWS_PER_THREAD):
            conn.execute("insert into t values (?, ?)", (tid, k))
            assert conn.execute("select count(*) from t").fetchone()[0] >= k + 1

    assert _run_threads(THREADS, _work) == []
    assert _committed_count(db_path) == THREADS * ROWS_PER_THREAD
    rows = conn.execute("select tid, count(*), sum(n) from t group by tid").fetchall()
    assert rows == [(tid, ROWS_PER_THREAD, sum(range(ROWS_PER_THREAD))) for tid in range(THREADS)]


def test_connection_per_thread(table, mp_connect, db_path):
    def _work(tid: int) -> None:
        conn = mp_connect()
        for k in range(1, ROWS_PER_THREAD + 1):
            conn.execute("insert into t values (?, ?)", (tid, k))
            conn.commit()
            assert conn.execute("select count(*) from t where tid = ?", (tid,)).fetchone() == (k,)
            conn.execute("select * from t").fetchall()

    assert _run_threads(THREADS, _work) == []
    assert _committed_count(db_path) == THREADS * ROWS_PER_THREAD


def test_concurrent_write_transactions_never_locked(table, mp_connect, db_path):
    """Multi-statement write transactions from many connections queue; none fails."""

    def _work(tid: int) -> None:
        conn = mp_connect()
        for k in range(5):
            with conn:
                conn.executemany("insert into t values (?, ?)", [(tid, k)] * 10)
                conn.execute("update t set n = n + 100 where tid = ? and n = ?", (tid, k))

    errors = _run_threads(THREADS, _work)
    assert [e for e in errors if "locked" in str(e)] == []
    assert errors == []
    assert _committed_count(db_path) == THREADS * 5 * 10


@pytest.mark.parametrize("begin", ["begin", "begin immediate"])
def test_read_modify_write_counter_is_exact(mp_connect, begin):
    conn = mp_connect()
    conn.execute("create table counter(n integer)")
    conn.execute("insert into counter values (0)")
    conn.commit()
    threads, rounds = 8, 15

    def _work(_tid: int) -> None:
        mine = mp_connect(isolation_level=None)
        for _ in range(rounds):
            mine.execute(begin)
            (value,) = mine.execute("select n from counter").fetchone()
            mine.execute("update counter set n = ?", (value + 1,))
            mine.execute("commit")

    assert _run_threads(threads, _work) == []
    assert conn.execute("select n from counter").fetchone() == (threads * rounds,)


def test_transaction_sees_own_writes_others_wait_for_commit(table, mp_connect, db_path):
    other = mp_connect()
    table.execute("insert into t values (1, 1)")
    assert table.execute("select count(*) from t").fetchone() == (1,)
    assert other.execute("select count(*) from t").fetchone() == (0,)
    assert _committed_count(db_path) == 0
    table.commit()
    assert other.execute("select count(*) from t").fetchone() == (1,)
    assert _committed_count(db_path) == 1


def test_readers_run_while_a_write_transaction_is_open(table, mp_connect):
    table.execute("insert into t values (0, 0)")
    table.commit()
    table.execute("insert into t values (1, 1)")  # open, uncommitted

    def _read(_tid: int) -> None:
        reader = mp_connect()
        for _ in range(10):
            assert reader.execute("select count(*) from t").fetchone() == (1,)

    assert _run_threads(8, _read) == []
    assert table.execute("select count(*) from t").fetchone() == (2,)
    table.rollback()


def test_second_writer_waits_for_first_commit(table, mp_connect, db_path):
    table.execute("insert into t values (1, 1)")  # holds the write lock
    second = mp_connect()
    errors: list[BaseException] = []

    def _write() -> None:
        try:
            second.execute("insert into t values (2, 2)")
            second.commit()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    writer = threading.Thread(target=_write, daemon=True)
    writer.start()
    time.sleep(0.3)
    table.commit()
    writer.join(60)
    assert not writer.is_alive()
    assert errors == []
    assert _committed_count(db_path) == 2


def test_statements_run_in_more_than_one_worker(mp_connect):
    conn = mp_connect(local_reads=False)  # every read goes to the workers
    conn.create_function("slow_pid", 0, _slow_pid)
    seen: set[int] = set()
    lock = threading.Lock()

    def _work(_tid: int) -> None:
        for _ in range(3):
            (pid,) = conn.execute("select slow_pid()").fetchone()
            with lock:
                seen.add(pid)

    assert _run_threads(8, _work) == []
    worker_pids = {w["pid"] for w in conn.pool_status()["workers"]}
    assert os.getpid() not in seen
    assert seen <= worker_pids
    assert len(seen) >= 2
    busy = [w for w in conn.pool_status()["workers"] if w["statements"] > 0]
    assert len(busy) >= 2


def test_function_registered_in_every_worker(mp_connect):
    conn = mp_connect(local_reads=False)
    conn.create_function("slow_pid", 0, _slow_pid)
    conn.create_function("triple", 1, lambda v: v * 3)
    results: list[int] = []

    def _work(_tid: int) -> None:
        for _ in range(3):
            results.append(conn.execute("select triple(?) + 0 * slow_pid()", (3,)).fetchone()[0])

    assert _run_threads(8, _work) == []
    assert results == [9] * 24


def test_same_file_shares_one_pool(mpsqlite, mp_connect):
    first, second = mp_connect(), mp_connect()
    first.execute("select 1").fetchall()
    second.execute("select 1").fetchall()
    pids = {w["pid"] for w in first.pool_status()["workers"]}
    assert pids == {w["pid"] for w in second.pool_status()["workers"]}
    sharing = [p for p in mpsqlite.pool_status() if pids & {w["pid"] for w in p["workers"]}]
    assert len(sharing) == 1


def test_different_files_use_different_pools(mp_connect, tmp_path):
    first, second = mp_connect(), mp_connect(tmp_path / "other.db")
    first_pids = {w["pid"] for w in first.pool_status()["workers"]}
    assert first_pids.isdisjoint({w["pid"] for w in second.pool_status()["workers"]})


def test_memory_connections_are_private(mp_connect):
    first, second = mp_connect(":memory:"), mp_connect(":memory:")
    first.execute("create table t(x)")
    first.execute("insert into t values (1)")
    assert first.execute("select x from t").fetchall() == [(1,)]
    with pytest.raises(sqlite3.OperationalError, match="no such table: t"):
        second.execute("select x from t")
    first_pids = {w["pid"] for w in first.pool_status()["workers"]}
    assert first_pids.isdisjoint({w["pid"] for w in second.pool_status()["workers"]})


def test_memory_connection_has_one_worker(mpsqlite):
    conn = mpsqlite.connect(":memory:")
    try:
        assert conn.pool_status()["size"] == 1
    finally:
        conn.close()


def test_memory_connection_shared_by_threads(mp_connect):
    conn = mp_connect(":memory:", isolation_level=None)
    conn.execute("create table t(tid, n)")

    def _work(tid: int) -> None:
        for k in range(ROWS_PER_THREAD):
            conn.execute("insert into t values (?, ?)", (tid, k))

    assert _run_threads(THREADS, _work) == []
    assert conn.execute("select count(*) from t").fetchone() == (THREADS * ROWS_PER_THREAD,)

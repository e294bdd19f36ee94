"""Many threads on mpsqlite: shared and per-thread connections, writers that queue in FIFO
order instead of failing with 'database is locked', exact read-modify-write transactions,
isolation, one database per file, and offloaded reads spread over worker processes."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing

import pytest

from tests.core._heavy import BIG, fill_big, mark_heavy, offloaded
from tests.core._procs import in_thread, wait_until, worker_pids

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


@pytest.fixture
def table(mp_connect):
    """An mpsqlite connection, shareable by threads, with a committed table ``t(tid, n)``."""
    conn = mp_connect(check_same_thread=False)
    conn.execute("create table t(tid integer, n integer)")
    conn.commit()
    return conn


def _committed_count(db_path) -> int:
    with closing(sqlite3.connect(str(db_path))) as check:
        return check.execute("select count(*) from t").fetchone()[0]


def test_pool_status_shape(mpsqlite, mp_connect):
    conn = mp_connect()
    status = conn.pool_status()
    assert set(status) >= {
        "database", "size", "workers", "waiting", "writer_waiting", "writer_busy",
        "writer_grants", "writer_wait_seconds", "local_statements", "offloaded_statements",
        "statements", "errors", "restarts", "commits", "fsyncs", "heavy_statements",
    }
    assert status["size"] == 2
    assert status["workers"] == []  # none until a read is worth one
    assert status in mpsqlite.pool_status()
    fill_big(conn)
    before = conn.pool_status()
    assert before["writer_grants"] >= 1 and not before["writer_busy"]
    mark_heavy(conn, "select x from big")
    assert conn.pool_status()["heavy_statements"] == 1
    assert len(conn.execute("select x from big").fetchall()) == BIG
    status = conn.pool_status()
    assert status["offloaded_statements"] == 1
    assert status["statements"] >= 1 and status["errors"] == 0 and status["restarts"] == 0
    (worker,) = status["workers"]
    assert set(worker) >= {"pid", "state", "statements", "errors"}
    assert worker["state"] == "idle" and worker["pid"] != os.getpid()
    assert status in mpsqlite.pool_status()


#: sqlite3 lets threads share a connection but does not make concurrent use of it safe
#: (from 3.12 two threads can meet in one cached statement): threads sharing one take turns.
_TURNS = threading.Lock()


def test_shared_connection_many_threads(table, db_path):
    def _work(tid: int) -> None:
        for k in range(1, ROWS_PER_THREAD + 1):
            with _TURNS:
                table.execute("insert into t values (?, ?)", (tid, k))
                table.commit()
            with _TURNS:
                (mine,) = table.execute("select count(*) from t where tid = ?",
                                        (tid,)).fetchone()
            assert mine == k

    assert _run_threads(THREADS, _work) == []
    assert table.execute("select count(*) from t").fetchone() == (THREADS * ROWS_PER_THREAD,)
    assert _committed_count(db_path) == THREADS * ROWS_PER_THREAD


def test_shared_autocommit_connection_many_threads(mp_connect, db_path):
    conn = mp_connect(isolation_level=None, check_same_thread=False)
    conn.execute("create table t(tid integer, n integer)")

    def _work(tid: int) -> None:
        for k in range(ROWS_PER_THREAD):
            with _TURNS:
                conn.execute("insert into t values (?, ?)", (tid, k))
            assert conn.execute("select count(*) from t").fetchone()[0] >= k + 1

    assert _run_threads(THREADS, _work) == []
    assert _committed_count(db_path) == THREADS * ROWS_PER_THREAD
    rows = conn.execute("select tid, count(*), sum(n) from t group by tid").fetchall()
    assert rows == [(tid, ROWS_PER_THREAD, sum(range(ROWS_PER_THREAD))) for tid in range(THREADS)]


def test_connection_per_thread(table, mpsqlite, db_path):
    def _work(tid: int) -> None:
        with closing(mpsqlite.connect(str(db_path), workers=2)) as conn:
            for k in range(1, ROWS_PER_THREAD + 1):
                conn.execute("insert into t values (?, ?)", (tid, k))
                conn.commit()
                assert conn.execute("select count(*) from t where tid = ?", (tid,)).fetchone() == (
                    k,)
                conn.execute("select * from t").fetchall()

    assert _run_threads(THREADS, _work) == []
    assert _committed_count(db_path) == THREADS * ROWS_PER_THREAD


def test_concurrent_write_transactions_never_locked(table, mpsqlite, db_path):
    """Multi-statement write transactions from many connections queue; none fails."""

    def _work(tid: int) -> None:
        with closing(mpsqlite.connect(str(db_path), workers=2)) as conn:
            for k in range(5):
                with conn:
                    conn.executemany("insert into t values (?, ?)", [(tid, k)] * 10)
                    conn.execute("update t set n = n + 100 where tid = ? and n = ?", (tid, k))

    errors = _run_threads(THREADS, _work)
    assert [e for e in errors if "locked" in str(e)] == []
    assert errors == []
    assert _committed_count(db_path) == THREADS * 5 * 10


@pytest.mark.parametrize("begin", ["begin immediate", "begin exclusive"])
def test_read_modify_write_counter_is_exact(mp_connect, mpsqlite, db_path, begin):
    """BEGIN IMMEDIATE queues in the gate: no transaction fails to upgrade its lock."""
    conn = mp_connect()
    conn.execute("create table counter(n integer)")
    conn.execute("insert into counter values (0)")
    conn.commit()
    threads, rounds = 8, 15

    def _work(_tid: int) -> None:
        with closing(mpsqlite.connect(str(db_path), workers=2, isolation_level=None)) as mine:
            for _ in range(rounds):
                mine.execute(begin)
                (value,) = mine.execute("select n from counter").fetchone()
                mine.execute("update counter set n = ?", (value + 1,))
                mine.execute("commit")

    assert _run_threads(threads, _work) == []
    assert conn.execute("select n from counter").fetchone() == (threads * rounds,)


def test_deferred_read_modify_write_fails_only_as_sqlite3_does(mp_connect, mpsqlite, db_path):
    """A deferred BEGIN that reads and then writes may find its snapshot outdated at its
    first write, as in sqlite3 ("database is locked" at once); retried, no update is lost."""
    conn = mp_connect()
    conn.execute("create table counter(n integer)")
    conn.execute("insert into counter values (0)")
    conn.commit()
    threads, rounds = 8, 15
    busy: list[str] = []

    def _work(_tid: int) -> None:
        with closing(mpsqlite.connect(str(db_path), workers=2, isolation_level=None,
                                      timeout=30)) as mine:
            done = 0
            while done < rounds:
                mine.execute("begin")
                (value,) = mine.execute("select n from counter").fetchone()
                try:
                    mine.execute("update counter set n = ?", (value + 1,))
                except sqlite3.OperationalError as exc:
                    busy.append(str(exc))
                    mine.execute("rollback")
                    continue
                mine.execute("commit")
                done += 1

    assert _run_threads(threads, _work) == []
    assert set(busy) <= {"database is locked"}
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


def test_readers_run_while_a_write_transaction_is_open(table, mpsqlite, db_path):
    table.execute("insert into t values (0, 0)")
    table.commit()
    table.execute("insert into t values (1, 1)")  # open, uncommitted, holding the writer

    def _read(_tid: int) -> None:
        with closing(mpsqlite.connect(str(db_path), workers=2, timeout=0.2)) as reader:
            for _ in range(10):
                assert reader.execute("select count(*) from t").fetchone() == (1,)

    assert _run_threads(8, _read) == []
    assert table.execute("select count(*) from t").fetchone() == (2,)
    table.rollback()


def test_second_writer_waits_for_first_commit(table, mp_connect, db_path):
    table.execute("insert into t values (1, 1)")  # holds the writer gate
    second = mp_connect(check_same_thread=False, timeout=60)

    def _write() -> None:
        second.execute("insert into t values (2, 2)")
        second.commit()

    writer, done, errors = in_thread(_write)
    wait_until(lambda: table.pool_status()["writer_waiting"] == 1, what="the second writer")
    assert not done.is_set()
    assert _committed_count(db_path) == 0
    table.commit()
    writer.join(60)
    assert not writer.is_alive()
    assert errors == []
    assert _committed_count(db_path) == 2
    assert table.pool_status()["writer_waiting"] == 0


def test_writers_get_the_gate_in_arrival_order(table, mpsqlite, db_path):
    """Queued writers are served first come, first served: each inserts its number once it
    holds the gate, so the rows' order is the order of arrival."""
    table.execute("insert into t values (0, 0)")  # the holder
    writers: list[threading.Thread] = []
    errors: list[BaseException] = []
    for i in range(1, 6):
        def _write(i: int = i) -> None:
            try:
                with closing(mpsqlite.connect(str(db_path), workers=2, timeout=60)) as conn:
                    conn.execute("insert into t values (?, ?)", (i, i))
                    conn.commit()
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                errors.append(exc)

        thread = threading.Thread(target=_write, daemon=True)
        thread.start()
        writers.append(thread)
        wait_until(lambda i=i: table.pool_status()["writer_waiting"] == i, what=f"writer {i}")
    table.commit()
    for thread in writers:
        thread.join(60)
    assert errors == []
    with closing(sqlite3.connect(str(db_path))) as check:
        assert check.execute("select tid from t order by rowid").fetchall() == [
            (i,) for i in range(6)]


def test_writer_times_out_with_database_is_locked(table, mp_connect):
    table.execute("insert into t values (1, 1)")
    impatient = mp_connect(timeout=0.2)
    with pytest.raises(sqlite3.OperationalError, match="database is locked") as raised:
        impatient.execute("insert into t values (2, 2)")
    assert getattr(raised.value, "sqlite_errorcode", 5) == 5  # SQLite's own (3.11+ say so)
    assert impatient.in_transaction  # as sqlite3 leaves it: its implicit BEGIN ran
    assert table.pool_status()["writer_waiting"] == 0  # it left the queue
    table.commit()
    impatient.execute("insert into t values (2, 2)")
    impatient.commit()
    assert impatient.execute("select count(*) from t").fetchone() == (2,)


def test_open_remote_results_are_held_by_different_workers(mp_connect):
    """A worker serves one result at a time: results still open on two connections are
    held by two worker processes, each with its connection's functions. A second read of
    the same connection meanwhile runs in the caller, in the snapshot the connection
    holds for the first (as a second sqlite3 cursor shares the first one's)."""
    conn, other = mp_connect(), mp_connect()
    fill_big(conn)
    sql = "select triple(x) from big order by x"
    for c in (conn, other):
        c.create_function("triple", 1, lambda v: v * 3)
    mark_heavy(conn, sql)  # heavy for the file: for both connections
    first, second = conn.execute(sql), other.execute(sql)
    assert first.fetchone() == (0,) and second.fetchone() == (0,)
    assert offloaded(conn) == 2
    workers = conn.pool_status()["workers"]
    assert len(workers) == 2
    assert [w["state"] for w in workers] == ["leased", "leased"]
    assert os.getpid() not in worker_pids(conn)
    third = conn.execute(sql)
    assert third.fetchone() == (0,) and offloaded(conn) == 2
    expected = [(3 * i,) for i in range(1, BIG)]
    assert first.fetchall() == second.fetchall() == third.fetchall() == expected
    assert [w["state"] for w in conn.pool_status()["workers"]] == ["idle", "idle"]


def test_threads_share_offloaded_reads(mp_connect):
    conn = mp_connect(check_same_thread=False)
    fill_big(conn)
    sql = "select x from big where x >= ? order by x"
    mark_heavy(conn, sql, (0,))
    expected = {k: [(x,) for x in range(k, BIG)] for k in range(8)}

    def _work(tid: int) -> None:
        for _ in range(3):
            with _TURNS:
                rows = conn.execute(sql, (tid,)).fetchall()
            assert rows == expected[tid]

    assert _run_threads(8, _work) == []
    # While another thread's read is part-way on this same connection, a read stays here
    # (it would not share that read's snapshot on a worker); with none, it moves.
    before = conn.pool_status()["offloaded_statements"]
    assert conn.execute(sql, (3,)).fetchall() == expected[3]
    status = conn.pool_status()
    assert status["offloaded_statements"] == before + 1
    assert 1 <= len(status["workers"]) <= status["size"]
    assert status["errors"] == 0 and status["restarts"] == 0


def test_same_file_is_one_database(mpsqlite, mp_connect):
    first, second = mp_connect(), mp_connect()
    fill_big(first)
    mark_heavy(first, "select x from big")  # what one connection learns, the other uses
    assert len(second.execute("select x from big").fetchall()) == BIG
    assert offloaded(second) == 1
    assert worker_pids(first) == worker_pids(second) != set()
    databases = [s for s in mpsqlite.pool_status() if s["database"] == first.pool_status()[
        "database"]]
    assert len(databases) == 1


def test_same_file_under_another_path_is_the_same_database(mp_connect, db_path, tmp_path):
    """A database is the file (device and inode), not its name: a symlink shares the gate."""
    alias = tmp_path / "alias.db"
    holder = mp_connect()
    holder.execute("create table t(x)")
    holder.commit()
    alias.symlink_to(db_path)
    other = mp_connect(alias, timeout=0.2)
    assert other.pool_status()["database"] == holder.pool_status()["database"]
    holder.execute("insert into t values (1)")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        other.execute("insert into t values (2)")
    holder.commit()
    other.execute("insert into t values (2)")
    other.commit()
    assert holder.execute("select x from t order by x").fetchall() == [(1,), (2,)]


def test_different_files_are_different_databases(mp_connect, tmp_path):
    first, second = mp_connect(), mp_connect(tmp_path / "other.db")
    for conn in (first, second):
        fill_big(conn)
        conn.execute("select x from big").fetchall()
        conn.execute("select x from big").fetchall()
    assert first.pool_status()["database"] != second.pool_status()["database"]
    assert offloaded(first) == offloaded(second) == 1
    assert worker_pids(first).isdisjoint(worker_pids(second))
    first.execute("insert into big values (-1, 'a')")  # holds first's gate, not second's
    second.execute("insert into big values (-1, 'b')")
    first.commit()
    second.commit()


def test_memory_connections_are_private(mpsqlite, mp_connect):
    before = len(mpsqlite.pool_status())
    first, second = mp_connect(":memory:"), mp_connect(":memory:")
    first.execute("create table t(x)")
    first.execute("insert into t values (1)")
    assert first.execute("select x from t").fetchall() == [(1,)]
    with pytest.raises(sqlite3.OperationalError, match="no such table: t"):
        second.execute("select x from t")
    assert first.pool_status() == {"database": "", "size": 0, "workers": []}
    assert len(mpsqlite.pool_status()) == before


def test_memory_connection_gets_no_workers_even_for_heavy_reads(mp_connect):
    conn = mp_connect(":memory:", workers=3)
    fill_big(conn)
    for _ in range(3):
        assert len(conn.execute("select x from big").fetchall()) == BIG
    assert conn.pool_status() == {"database": "", "size": 0, "workers": []}


def test_memory_connection_shared_by_threads(mp_connect):
    conn = mp_connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.execute("create table t(tid, n)")

    def _work(tid: int) -> None:
        for k in range(ROWS_PER_THREAD):
            with _TURNS:
                conn.execute("insert into t values (?, ?)", (tid, k))

    assert _run_threads(THREADS, _work) == []
    assert conn.execute("select count(*) from t").fetchone() == (THREADS * ROWS_PER_THREAD,)

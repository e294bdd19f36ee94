"""Faults around mpsqlite's worker processes: workers killed with SIGKILL in the middle of
an offloaded read, while idle, while leased and while a transaction is open, and errors
raised on a worker. Real processes and real signals; pytest-timeout turns a hang into a
failure. Workers only ever read, so a dead worker costs one read at most."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from contextlib import closing

import pytest

import mpsqlite
from tests.core._heavy import BIG, fill_big, mark_heavy, run_remote, staller, wait_for_file
from tests.core._procs import (
    child_pids,
    committed_rows,
    in_thread,
    reaped,
    still_running,
    wait_fully_exited,
    wait_until,
    worker_pids,
)

pytestmark = pytest.mark.timeout(90)

_DIED = r"worker process \d+ died"
_STALL = "select stall(?)"
_BIG_SQL = "select x, s from big order by x"
_BIG_ROWS = [(i, f"s{i}") for i in range(BIG)]


def _assert_no_orphans() -> None:
    """Every child process of ours is a worker that some database still lists."""
    listed = {w["pid"] for status in mpsqlite.pool_status() for w in status["workers"]}
    assert child_pids() <= listed


def _assert_reaped(pid: int) -> None:
    """``pid`` is gone and reaped: neither running nor a zombie child of ours."""
    assert still_running([pid], 10) == []
    assert reaped(pid)


@pytest.fixture
def table(mp_connect):
    """An mpsqlite connection (shareable by threads) with committed ``t(x)`` rows 1, 2, 3,
    the BIG-row table ``big`` and the SQL function ``stall``."""
    conn = mp_connect(check_same_thread=False)
    conn.execute("create table t(x)")
    conn.executemany("insert into t values (?)", [(1,), (2,), (3,)])
    conn.commit()
    fill_big(conn)
    conn.create_function("stall", 1, staller())
    return conn


def _start_workers(conn, count: int = 1) -> set[int]:
    """Offload ``count`` reads at once, from ``conn`` and more connections to its file (open
    results hold their workers); the workers' pids."""
    mark_heavy(conn, _BIG_SQL)
    path = conn.execute("pragma database_list").fetchone()[2]
    others = [mpsqlite.connect(path) for _ in range(count - 1)]
    try:
        cursors = [c.execute(_BIG_SQL) for c in (conn, *others)]
        for cur in cursors:
            assert cur.fetchone() == (0, "s0")
        pids = worker_pids(conn)
        assert len(pids) == count
        for cur in cursors:
            assert cur.fetchall() == _BIG_ROWS[1:]
    finally:
        for c in others:
            c.close()
    return pids


def _kill_all(pids) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_fully_exited(pid)


def test_kill_worker_in_the_middle_of_an_offloaded_read(table, tmp_path, db_path):
    assert table.execute(_STALL, ("",)).fetchone() == (0,)  # heavy by CPU
    assert run_remote(table, _STALL, ("",)) == [(0,)]
    marker = tmp_path / "pid"
    thread, _, errors = in_thread(lambda: table.execute(_STALL, (str(marker),)).fetchall())
    victim = int(wait_for_file(marker))
    assert victim in worker_pids(table) and victim != os.getpid()
    os.kill(victim, signal.SIGKILL)
    thread.join(20)
    assert not thread.is_alive(), "caller still blocked after its worker was killed"
    assert len(errors) == 1
    assert isinstance(errors[0], mpsqlite.WorkerDied)
    assert isinstance(errors[0], sqlite3.OperationalError)
    with pytest.raises(sqlite3.OperationalError, match=_DIED):
        raise errors[0]
    # the next statement works, on a replacement worker
    assert run_remote(table, _STALL, ("",)) == [(0,)]
    status = table.pool_status()
    assert status["restarts"] == 1
    assert victim not in worker_pids(table) and len(status["workers"]) == 1
    _assert_reaped(victim)
    _assert_no_orphans()
    assert committed_rows(db_path) == [(1,), (2,), (3,)]
    table.execute("insert into t values (4)")  # writes never needed the worker
    table.commit()
    assert committed_rows(db_path) == [(1,), (2,), (3,), (4,)]


def test_kill_worker_while_it_holds_the_rest_of_a_result(table):
    mark_heavy(table, _BIG_SQL)
    cur = table.execute(_BIG_SQL)  # more rows than one reply: the worker keeps the rest
    assert cur.fetchone() == (0, "s0")
    (victim,) = worker_pids(table)
    os.kill(victim, signal.SIGKILL)
    wait_fully_exited(victim)
    with pytest.raises(mpsqlite.WorkerDied, match=_DIED):
        cur.fetchall()
    assert cur.fetchone() is None  # reported once; the result is over
    assert cur.fetchall() == []
    assert cur.execute(_BIG_SQL).fetchall() == _BIG_ROWS  # the same cursor, a new worker
    assert victim not in worker_pids(table)
    assert table.pool_status()["restarts"] == 1
    _assert_reaped(victim)
    _assert_no_orphans()


def test_killing_idle_workers_costs_no_error(table, db_path):
    killed = _start_workers(table, 2)
    _kill_all(killed)
    assert run_remote(table, _BIG_SQL) == _BIG_ROWS
    status = table.pool_status()
    assert status["restarts"] == 2
    assert worker_pids(table).isdisjoint(killed) and len(status["workers"]) == 1
    assert committed_rows(db_path) == [(1,), (2,), (3,)]
    for pid in killed:
        _assert_reaped(pid)
    _assert_no_orphans()


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_an_open_transaction_is_untouched_by_killing_every_worker(table, db_path, end):
    _start_workers(table, 2)
    table.execute("insert into t values (4)")
    table.execute("insert into t values (5)")
    assert table.in_transaction
    _kill_all(worker_pids(table))
    # inside the transaction reads stay in the caller and see its own writes
    assert table.execute("select x from t order by x").fetchall() == [(i,) for i in range(1, 6)]
    assert len(table.execute(_BIG_SQL).fetchall()) == BIG
    getattr(table, end)()
    assert not table.in_transaction
    expected = [(i,) for i in range(1, 6 if end == "commit" else 4)]
    assert committed_rows(db_path) == expected
    assert run_remote(table, _BIG_SQL) == _BIG_ROWS


def test_a_replacement_worker_gets_the_connections_functions_pragmas_and_attachments(
        table, tmp_path):
    aux = tmp_path / "aux.db"
    with closing(sqlite3.connect(aux)) as plain:
        plain.execute("create table a(v)")
        plain.executemany("insert into a values (?)", [(i,) for i in range(BIG)])
        plain.commit()
    table.create_function("twice", 1, lambda v: 2 * v)
    table.execute("pragma case_sensitive_like = on")
    table.execute("attach database ? as aux", (str(aux),))
    sql = ("select twice(big.x), 'abc' like 'ABC', aux.a.v from big join aux.a "
           "on aux.a.v = big.x order by big.x")
    expected = [(2 * i, 0, i) for i in range(BIG)]
    assert mark_heavy(table, sql) == expected
    assert run_remote(table, sql) == expected
    _kill_all(worker_pids(table))
    assert run_remote(table, sql) == expected  # a replacement, set up as the connection is
    assert table.pool_status()["restarts"] == 1


def test_a_worker_that_died_while_leased_is_replaced_not_handed_on(mp_connect):
    holder = mp_connect(workers=1)
    fill_big(holder)
    mark_heavy(holder, _BIG_SQL)
    cur = holder.execute(_BIG_SQL)  # keeps the only worker
    assert cur.fetchone() == (0, "s0")
    (victim,) = worker_pids(holder)
    waiter = mp_connect(workers=1, check_same_thread=False)
    result: list = []
    thread, _, errors = in_thread(lambda: result.append(waiter.execute(_BIG_SQL).fetchall()))
    wait_until(lambda: holder.pool_status()["waiting"] == 1, what="the waiter to queue")
    os.kill(victim, signal.SIGKILL)
    wait_fully_exited(victim)
    cur.close()  # gives the dead worker back: the waiter must get a live one
    thread.join(30)
    assert not thread.is_alive()
    assert errors == [] and result == [_BIG_ROWS]
    status = waiter.pool_status()
    assert status["offloaded_statements"] == 2  # the waiter's read did run on a worker
    assert victim not in worker_pids(waiter) and len(status["workers"]) == 1
    _assert_reaped(victim)


def _boom_factory():
    def boom(x, at):
        if x == at:
            raise ValueError("boom")
        return x

    return boom


_ERROR_CASES = {
    # name: (sql, params that make it heavy, params that fail)
    "function-raises": ("select boom(x, ?) from big", (-1,), (5,)),
    "too-many-parameters": ("select x from big where x >= ?", (0,), (0, 1)),
    "missing-named-parameter": ("select x from big where x >= :lo", {"lo": 0}, {"hi": 0}),
    "integer-overflow": ("select x from big where x >= ?", (0,), (2**63,)),
}


@pytest.mark.parametrize("case", list(_ERROR_CASES))
def test_an_error_raised_on_a_worker_is_sqlite3s_and_keeps_it(table, case):
    sql, heavy_params, bad_params = _ERROR_CASES[case]
    table.create_function("boom", 2, _boom_factory())
    mark_heavy(table, sql, heavy_params)
    rows = run_remote(table, sql, heavy_params)
    (pid,) = worker_pids(table)
    with closing(sqlite3.connect(":memory:")) as reference:
        reference.create_function("boom", 2, _boom_factory())
        fill_big(reference)
        assert reference.execute(sql, heavy_params).fetchall() == rows
        with pytest.raises(Exception) as expected:
            reference.execute(sql, bad_params).fetchall()
    with pytest.raises(Exception) as got:
        table.execute(sql, bad_params).fetchall()
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)
    status = table.pool_status()
    assert status["errors"] == 1  # it was the worker's error
    assert run_remote(table, sql, heavy_params) == rows
    assert table.pool_status()["restarts"] == 0 and worker_pids(table) == {pid}


class _Unpicklable:
    """A parameter that can be neither pickled nor adapted."""

    def __reduce__(self):
        raise TypeError("cannot pickle _Unpicklable")


@pytest.mark.parametrize("value", [threading.Lock(), _Unpicklable()], ids=["lock", "custom"])
def test_an_unsupported_parameter_of_a_heavy_read_fails_as_in_sqlite3(table, value):
    sql = "select x from big where x >= ?"
    mark_heavy(table, sql, (0,))
    statements = table.pool_status()["statements"]
    with closing(sqlite3.connect(":memory:")) as reference:
        with pytest.raises(Exception) as expected:
            reference.execute("select ?", (value,))
    with pytest.raises(Exception) as got:
        table.execute(sql, (value,))
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)
    assert isinstance(got.value, (sqlite3.ProgrammingError, sqlite3.InterfaceError))  # 3.10
    assert table.pool_status()["statements"] == statements  # no worker was asked
    assert run_remote(table, sql, (0,)) == [(i,) for i in range(BIG)]

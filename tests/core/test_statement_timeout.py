"""statement_timeout: statements that run too long are interrupted, in the caller and on a
worker; a worker whose statement does not stop is killed and replaced. Real statements that
would run for hours, real worker processes and signals; nothing asserts how fast."""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import closing

import pytest

import mpsqlite
from tests.core._heavy import (
    COUNT_SPIN,
    spinner,
    staller,
    wait_for_file,
)
from tests.core._procs import child_pids, interrupting, still_running, worker_pids

pytestmark = pytest.mark.timeout(90)

LIMIT = 0.2
#: A count that runs for hours unless interrupted.
ENDLESS = "with recursive c(n) as (select 1 union all select n + 1 from c) select count(*) from c"
#: Rows without end: the work happens while they are fetched.
ENDLESS_ROWS = "with recursive c(n) as (select 1 union all select n + 1 from c) select n from c"
#: An INSERT that runs for hours unless interrupted.
ENDLESS_INSERT = (
    "insert into t with recursive c(n) as (select 1 union all select n + 1 from c "
    "where n < ?) select count(*) from c"
)
_EXCEEDED = rf"statement exceeded statement_timeout={LIMIT:g} s and was interrupted"


@pytest.mark.parametrize("value", [0, -1, 0.0, "1", True, float("nan")])
@pytest.mark.parametrize("option", ["statement_timeout", "log_slow_statements"])
def test_bad_values_raise_value_error_and_create_nothing(mpsqlite, db_path, option, value):
    with pytest.raises(ValueError, match=f"{option} must be a positive number of seconds"):
        mpsqlite.connect(str(db_path), **{option: value})
    assert not db_path.exists()


@pytest.mark.parametrize("target", ["file", ":memory:"])
def test_long_statement_is_interrupted_and_the_connection_goes_on(mp_connect, target):
    conn = mp_connect(None if target == "file" else ":memory:", statement_timeout=LIMIT)
    with pytest.raises(sqlite3.OperationalError, match=_EXCEEDED) as got:
        conn.execute(ENDLESS)
    assert getattr(got.value, "sqlite_errorname", "SQLITE_INTERRUPT") == "SQLITE_INTERRUPT"
    assert conn.execute("select 40 + 2").fetchone() == (42,)
    cur = conn.cursor()
    with pytest.raises(sqlite3.OperationalError, match=_EXCEEDED):
        cur.execute(ENDLESS)
    assert cur.execute("select 1").fetchall() == [(1,)]  # the same cursor, too


def test_executemany_and_executescript_are_bounded(mp_connect):
    conn = mp_connect(statement_timeout=LIMIT)
    conn.execute("create table t(x)")
    with pytest.raises(sqlite3.OperationalError, match=_EXCEEDED):
        conn.executemany(ENDLESS_INSERT, [(1,), (10**12,)])
    assert not conn.in_transaction
    with pytest.raises(sqlite3.OperationalError, match=_EXCEEDED):
        conn.executescript(f"insert into t values (1); {ENDLESS};")
    conn.execute("insert into t values (2)")
    conn.commit()
    assert conn.execute("select x from t").fetchall() == [(1,), (2,)]


@pytest.mark.parametrize("how", ["iterate", "fetchone", "fetchmany", "fetchall"])
def test_a_select_is_interrupted_while_its_rows_are_fetched(mp_connect, how):
    conn = mp_connect(statement_timeout=LIMIT)
    cur = conn.execute(ENDLESS_ROWS)  # the first row comes at once: the rest is the work
    seen = 0
    with pytest.raises(sqlite3.OperationalError, match=_EXCEEDED):
        if how == "iterate":
            for _ in cur:
                seen += 1
        elif how == "fetchone":
            while cur.fetchone() is not None:
                seen += 1
        elif how == "fetchmany":
            while cur.fetchmany(1000):
                seen += 1000
        else:
            cur.fetchall()
    assert how == "fetchall" or seen > 0
    assert type(cur) is mpsqlite.Cursor  # its class is its own again
    assert cur.execute("select 1").fetchall() == [(1,)]
    assert type(cur) is mpsqlite.Cursor


def test_time_between_fetches_does_not_count(mp_connect):
    """A cursor read slowly by the application is not interrupted: only time inside
    SQLite counts (waiting on an Event, not a speed measurement)."""
    conn = mp_connect(statement_timeout=LIMIT)
    cur = conn.execute("with recursive c(n) as (select 1 union all select n + 1 from c "
                       "where n < 5) select n from c")
    got = []
    pause = threading.Event()
    for row in cur:
        got.append(row[0])
        pause.wait(LIMIT / 2)  # the application's own time: longer than the limit in total
    assert got == [1, 2, 3, 4, 5]


def _interrupted_in_transaction(dbapi, connect, sql: str, params: tuple) -> None:
    """Run ``sql`` in an open transaction until it is interrupted: by statement_timeout
    (mpsqlite) or by interrupt() from a timer (sqlite3, the reference)."""
    if dbapi.__name__ == "mpsqlite":
        conn = connect(statement_timeout=LIMIT)
        timer = None
    else:
        conn = connect(check_same_thread=False)
        timer = threading.Timer(LIMIT, conn.interrupt)
    conn.execute("create table t(x)")
    conn.commit()
    conn.execute("insert into t values (1)")
    assert conn.in_transaction
    if timer is not None:
        timer.start()
    try:
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            conn.execute(sql, params).fetchall()
    finally:
        if timer is not None:
            timer.cancel()
    return conn


def test_interrupted_write_leaves_the_transaction_as_sqlite3_does(dbapi, connect, db_path):
    """SQLite rolls back a transaction when it interrupts an INSERT: the earlier row is
    gone, no transaction is open and another connection can write at once."""
    conn = _interrupted_in_transaction(dbapi, connect, ENDLESS_INSERT, (10**12,))
    assert conn.in_transaction is False
    assert conn.execute("select x from t").fetchall() == []
    with closing(sqlite3.connect(str(db_path), timeout=0)) as other:
        other.execute("insert into t values (3)")
        other.commit()
    conn.execute("insert into t values (2)")
    conn.commit()
    assert conn.execute("select x from t order by x").fetchall() == [(2,), (3,)]


def test_interrupted_read_keeps_the_transaction_as_sqlite3_does(dbapi, connect):
    conn = _interrupted_in_transaction(dbapi, connect, ENDLESS, ())
    assert conn.in_transaction is True
    conn.commit()
    assert conn.execute("select x from t").fetchall() == [(1,)]


def test_the_applications_own_interrupt_keeps_sqlite3s_message(mp_connect):
    conn = mp_connect(statement_timeout=60, check_same_thread=False)
    with interrupting(conn), pytest.raises(sqlite3.OperationalError) as got:
        conn.execute(ENDLESS)
    assert str(got.value) == "interrupted"


def _spin_on_a_worker(conn) -> int:
    """Make COUNT_SPIN heavy, run it once on a worker; that worker's pid."""
    conn.create_function("spin", 2, spinner())
    assert conn.execute(COUNT_SPIN, (2000, "")).fetchone() == (2000,)  # heavy by CPU
    assert conn.execute(COUNT_SPIN, (2000, "")).fetchone() == (2000,)  # on a worker
    assert conn.pool_status()["offloaded_statements"] == 1
    (pid,) = worker_pids(conn)
    return pid


def test_statement_on_a_worker_is_interrupted_there_and_the_worker_stays(mp_connect):
    conn = mp_connect(statement_timeout=LIMIT, workers=1)
    pid = _spin_on_a_worker(conn)
    with pytest.raises(sqlite3.OperationalError, match=_EXCEEDED + f" on worker process {pid}"):
        conn.execute(COUNT_SPIN, (10**12, "")).fetchall()
    assert conn.execute(COUNT_SPIN, (2000, "")).fetchone() == (2000,)
    status = conn.pool_status()
    assert worker_pids(conn) == {pid} and status["restarts"] == 0
    assert (status["errors"], status["offloaded_statements"]) == (1, 2)


def test_rows_fetched_from_a_worker_are_bounded_too(mp_connect):
    """A remote result's later chunks are computed while they are fetched: the worker
    interrupts a fetch that takes the statement past its limit."""
    conn = mp_connect(statement_timeout=LIMIT, workers=1)
    conn.create_function("spin", 2, spinner())
    sql = ("with recursive c(n) as (select 1 union all select n + 1 from c where n < ?) "
           "select spin(n, '') from c")
    assert len(conn.execute(sql, (2000,)).fetchall()) == 2000  # heavy by rows
    assert len(conn.execute(sql, (2000,)).fetchall()) == 2000
    assert conn.pool_status()["offloaded_statements"] == 1
    (pid,) = worker_pids(conn)
    cur = conn.execute(sql, (10**12,))
    assert conn.pool_status()["offloaded_statements"] == 2
    seen = 0
    with pytest.raises(sqlite3.OperationalError, match=_EXCEEDED + f" on worker process {pid}"):
        for _ in cur:
            seen += 1
    assert seen >= 1024  # the first chunk came with the execute
    assert worker_pids(conn) == {pid}
    assert len(conn.execute(sql, (2000,)).fetchall()) == 2000


def test_a_worker_that_does_not_stop_is_killed_and_replaced(mp_connect, tmp_path, caplog):
    """A Python function that never returns cannot be interrupted: its worker is killed
    after the deadline and a grace period, the caller is told, the kill is logged, and
    the pool heals."""
    conn = mp_connect(statement_timeout=LIMIT, workers=1)
    conn.create_function("stall", 1, staller())
    assert conn.execute("select stall(?)", ("",)).fetchall() == [(0,)]  # heavy by CPU
    marker = tmp_path / "stalled"
    with caplog.at_level(logging.WARNING, logger="mpsqlite.workers"), pytest.raises(
            sqlite3.OperationalError,
            match=rf"statement_timeout={LIMIT:g} s and did not stop") as got:
        conn.execute("select stall(?)", (str(marker),)).fetchall()
    pid = int(wait_for_file(marker))
    assert f"worker process {pid} " in str(got.value)
    (record,) = [r for r in caplog.records if r.name == "mpsqlite.workers"]
    assert f"process {pid} " in record.getMessage() and "killed" in record.getMessage()
    assert still_running([pid], 10) == []
    assert conn.execute("select stall(?)", ("",)).fetchall() == [(0,)]  # on a new worker
    assert conn.pool_status()["restarts"] == 1
    assert pid not in worker_pids(conn)
    listed = {w["pid"] for s in mpsqlite.pool_status() for w in s["workers"]}
    assert child_pids() <= listed  # no orphan


def test_connection_without_the_option_runs_past_any_limit_set_elsewhere(mp_connect):
    """The timeout is per connection: another connection's limit does not reach this one."""
    timed = mp_connect(statement_timeout=LIMIT)
    plain = mp_connect(check_same_thread=False)
    with pytest.raises(sqlite3.OperationalError, match=_EXCEEDED):
        timed.execute(ENDLESS)
    stop = threading.Timer(3 * LIMIT, plain.interrupt)  # ends the endless query below
    stop.start()
    try:
        with pytest.raises(sqlite3.OperationalError) as got:
            plain.execute(ENDLESS)
    finally:
        stop.cancel()
    assert str(got.value) == "interrupted"  # the application's interrupt, not a timeout

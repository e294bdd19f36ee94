"""Pooling under threads, and recovery from a dead worker or a closed connection."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, exc, func, select, text
from sqlalchemy.orm import Session

import mpsqlite

metadata = MetaData()
counter = Table("counter", metadata, Column("id", Integer, primary_key=True), Column("n", Integer))
event_log = Table(
    "event_log", metadata, Column("id", Integer, primary_key=True), Column("thread", Integer)
)

THREADS = 8
ROUNDS = 15


def _run_threads(target, count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


@pytest.mark.parametrize("pool_args", [{}, {"pool_size": 2, "max_overflow": 0}])
def test_threaded_sessions_lose_no_update(make_engine, pool_of, pool_args) -> None:
    engine = make_engine("timeout=30", **pool_args)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(counter.insert().values(id=1, n=0))

    def work(index: int) -> None:
        for _ in range(ROUNDS):
            with Session(engine) as session:
                session.execute(counter.update().values(n=counter.c.n + 1))
                session.execute(event_log.insert().values(thread=index))
                before = session.scalar(select(func.count()).select_from(event_log))
                session.commit()
                assert before >= 1

    assert _run_threads(work, THREADS) == []
    with engine.connect() as conn:
        assert conn.scalar(select(counter.c.n)) == THREADS * ROUNDS
        per_thread = conn.execute(
            select(event_log.c.thread, func.count()).group_by(event_log.c.thread)
        ).all()
    assert sorted(per_thread) == [(i, ROUNDS) for i in range(THREADS)]
    status = pool_of()
    assert status["errors"] == 0
    # every write transaction passed the writer gate, one at a time, and none is left in it
    assert status["writer_grants"] >= THREADS * ROUNDS
    assert (status["writer_busy"], status["writer_waiting"]) == (False, 0)
    assert status["commits"] >= THREADS * ROUNDS and status["fsyncs"] >= 1
    assert engine.pool.checkedout() == 0


#: A read mpsqlite judges GIL-heavy: it returns more rows (fetched with fetchall or
#: fetchmany) than mpsqlite's threshold (1000), and more than a worker sends in its
#: first reply (1024), so that an unfinished result keeps its worker leased.
HEAVY_ROWS = 50_000
heavy = text(
    "with recursive r(i) as (select 1 union all select i + 1 from r where i < "
    f"{HEAVY_ROWS}) select i from r"
)


def _offload_heavy_read(engine) -> None:
    """Run ``heavy`` twice: the first run (in this process) marks it heavy, the second
    runs on a worker process."""
    for _ in range(2):
        with engine.connect() as conn:
            assert len(conn.execute(heavy).all()) == HEAVY_ROWS


def _worker_pids(status: dict) -> set[int]:
    return {w["pid"] for w in status["workers"]}


def test_no_worker_runs_until_a_read_proves_heavy(make_engine, pool_of) -> None:
    engine = make_engine()
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(counter.insert().values(id=1, n=0))
    with engine.connect() as conn:
        assert conn.execute(select(counter.c.n)).scalar() == 0
    status = pool_of()
    assert status["workers"] == []
    assert status["offloaded_statements"] == 0 and status["local_statements"] > 0


def test_heavy_autocommit_reads_run_on_several_workers_at_once(make_engine, pool_of) -> None:
    engine = make_engine(isolation_level="AUTOCOMMIT")
    _offload_heavy_read(engine)
    status = pool_of()
    assert status["offloaded_statements"] >= 1
    assert status["heavy_statements"] >= 1
    assert _worker_pids(status) and os.getpid() not in _worker_pids(status)

    # Two unfinished heavy results at once: each holds a worker until it is read.
    with engine.connect() as first, engine.connect() as second:
        offloaded = pool_of()["offloaded_statements"]
        one = first.execute(heavy)
        two = second.execute(heavy)
        assert (one.fetchone(), two.fetchone()) == ((1,), (1,))
        status = pool_of()
        assert status["offloaded_statements"] == offloaded + 2
        leased = {w["pid"] for w in status["workers"] if w["state"] == "leased"}
        assert len(leased) == 2 and os.getpid() not in leased
        assert len(one.all()) == len(two.all()) == HEAVY_ROWS - 1
    assert {w["state"] for w in pool_of()["workers"]} == {"idle"}


def _wait_gone(pid: int) -> None:
    """Wait until a killed worker has wholly exited: its threads gone, its sockets closed.

    A multi-threaded process shows as a zombie ("Z") as soon as its main thread exits,
    while its other threads may still be exiting and holding its file descriptors."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            threads = len(os.listdir(f"/proc/{pid}/task"))
        except FileNotFoundError:
            return
        if state in ("Z", "X") and threads <= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} still running")


def test_dead_worker_invalidates_and_pool_recovers(engine, pool_of) -> None:
    metadata.create_all(engine)
    # Another connection stays open throughout, as in any busy application, so the
    # database's counters live on while the killed worker's connection is replaced.
    bystander = engine.connect()
    bystander.execute(select(counter)).all()
    _offload_heavy_read(engine)  # a worker now exists and serves `heavy`
    restarts = pool_of()["restarts"]
    with engine.connect() as conn:
        result = conn.execute(heavy)
        assert result.fetchone() == (1,)  # the rest of the result is still in the worker
        leased = [w["pid"] for w in pool_of()["workers"] if w["state"] == "leased"]
        assert len(leased) == 1 and leased[0] != os.getpid()
        os.kill(leased[0], signal.SIGKILL)
        _wait_gone(leased[0])
        with pytest.raises(exc.OperationalError) as caught:
            result.all()
        assert caught.value.connection_invalidated
        assert isinstance(caught.value.orig, mpsqlite.WorkerDied)
        assert "worker process" in str(caught.value)
        assert conn.invalidated
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(counter)).scalar() == 0
        assert len(conn.execute(heavy).all()) == HEAVY_ROWS  # on a fresh worker
    status = pool_of()
    assert leased[0] not in _worker_pids(status)
    assert status["restarts"] == restarts + 1
    assert _worker_pids(status) and os.getpid() not in _worker_pids(status)
    assert bystander.execute(select(counter)).all() == []  # never invalidated
    bystander.close()


def test_idle_worker_killed_between_statements_is_replaced(engine, pool_of) -> None:
    """A worker that died while idle is noticed before it is lent: nobody sees an error."""
    with engine.connect() as conn:
        for _ in range(2):
            assert len(conn.execute(heavy).all()) == HEAVY_ROWS
        status = pool_of()
        (idle,) = [w["pid"] for w in status["workers"] if w["state"] == "idle"]
        os.kill(idle, signal.SIGKILL)
        _wait_gone(idle)
        offloaded = status["offloaded_statements"]
        assert len(conn.execute(heavy).all()) == HEAVY_ROWS
        assert not conn.invalidated
        status = pool_of()
        assert status["offloaded_statements"] == offloaded + 1  # on a new worker
        assert idle not in _worker_pids(status) and _worker_pids(status)
        assert status["restarts"] == 1


def test_closed_dbapi_connection_is_a_disconnect(engine) -> None:
    with engine.connect() as conn:
        conn.connection.dbapi_connection.close()
        with pytest.raises(exc.DBAPIError) as caught:
            conn.execute(text("select 1"))
        assert caught.value.connection_invalidated
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (mpsqlite.OperationalError("mpsqlite worker process 12 died (killed) mid-request"), True),
        (mpsqlite.OperationalError("mpsqlite worker process 12 exited with status 1"), True),
        (mpsqlite.ProgrammingError("Cannot operate on a closed database."), True),
        (mpsqlite.InterfaceError("connection is closed"), True),
        (mpsqlite.OperationalError("no such table: nothing"), False),
        (mpsqlite.OperationalError("database is locked"), False),
        (ValueError("worker process died"), False),
    ],
)
def test_is_disconnect_messages(engine, error: Exception, expected: bool) -> None:
    assert engine.dialect.is_disconnect(error, None, None) is expected


def test_errors_arrive_as_sqlite3_classes(engine) -> None:
    with engine.connect() as conn:
        with pytest.raises(exc.OperationalError) as caught:
            conn.execute(text("select * from no_such_table"))
    assert type(caught.value.orig) is sqlite3.OperationalError

"""Pooling under threads, and recovery from a dead worker or a closed connection."""

from __future__ import annotations

import inspect
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
    assert all(w["state"] != "pinned" for w in status["workers"])
    assert engine.pool.checkedout() == 0


def test_autocommit_reads_run_on_several_workers_at_once(make_engine, pool_of) -> None:
    # this test is about the workers: keep mpsqlite's in-thread cheap reads out of it
    local = "local_reads" in inspect.signature(mpsqlite.connect).parameters
    engine = make_engine("local_reads=false" if local else "", isolation_level="AUTOCOMMIT")
    slow = text(
        "with recursive r(i) as (select 1 union all select i + 1 from r where i < 400000) "
        "select count(*) from r"
    )
    with engine.connect() as conn:  # warm up: pool and workers started
        conn.execute(text("select 1"))
    before = {w["pid"]: w["statements"] for w in pool_of()["workers"]}
    barrier = threading.Barrier(3)

    def read(_: int) -> None:
        with engine.connect() as conn:
            barrier.wait(30)
            assert conn.execute(slow).scalar() == 400000

    assert _run_threads(read, 3) == []
    after = {w["pid"]: w["statements"] for w in pool_of()["workers"]}
    used = [pid for pid in after if after[pid] > before.get(pid, 0)]
    assert len(used) >= 2


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} still running")


def test_dead_worker_invalidates_and_pool_recovers(engine, pool_of) -> None:
    metadata.create_all(engine)
    with engine.connect() as conn:
        conn.execute(counter.insert())  # the first write pins the transaction's worker
        pinned = [w["pid"] for w in pool_of()["workers"] if w["state"] == "pinned"]
        assert len(pinned) == 1
        os.kill(pinned[0], signal.SIGKILL)
        _wait_gone(pinned[0])
        with pytest.raises(exc.OperationalError) as caught:
            conn.execute(select(counter)).all()
        assert caught.value.connection_invalidated
        assert "worker process" in str(caught.value)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(counter)).scalar() == 0
    assert pinned[0] not in [w["pid"] for w in pool_of()["workers"]]


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

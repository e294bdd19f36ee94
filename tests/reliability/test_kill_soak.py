"""Worker processes SIGKILLed under load: no acknowledged commit lost, no half pair, no hang.

8 threads commit pairs of rows, 4 threads run a heavy read (it runs on
workers), and a worker is killed every 100-300 ms; once on the sqlite3 path
and once with ``driver=``. A killed worker may cost its caller an error, never
data. One transaction in 50 is doomed (a deferred foreign key fails its
commit), so that raised commits are checked too: a commit whose error says
its outcome is unknown may have happened, every other one that raised must be
absent. Figures are printed (``-s``).
``MPSQLITE_SOAK_SECONDS`` sets each variant's load (default 20 s).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from contextlib import closing

import pytest

import mpsqlite
from tests.core._procs import wait_fully_exited, worker_pids
from tests.reliability import _soak, _testdriver

pytestmark = pytest.mark.timeout(300)

SECONDS = float(os.environ.get("MPSQLITE_SOAK_SECONDS", "20"))
WORKERS = 3
VARIANTS = {"sqlite3": {}, "driver": {"driver": "tests.reliability._testdriver",
                                      "driver_kwargs": {"foreign_keys": True}}}


def _no_workers_left(within: float = 10.0) -> set[int]:
    deadline = time.monotonic() + within
    while (left := _soak.worker_children()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_killed_workers_lose_no_acknowledged_commit(tmp_path, variant):
    path = tmp_path / "soak.db"
    _soak.create(path)
    options = VARIANTS[variant]

    def connect():
        con = mpsqlite.connect(str(path), workers=WORKERS, timeout=30, **options)
        if variant == "sqlite3":
            con.execute("pragma foreign_keys = on")
        return con

    observer = connect()  # keeps the database's figures alive to the end
    with _soak.watchdog(SECONDS + _soak.HANG_SECONDS + 120):
        tally = _soak.run(connect, SECONDS)
        status = observer.pool_status()
        observer.close()
        mpsqlite.shutdown()
        left = _no_workers_left()
    gc.collect()
    report = _soak.check(path, tally)
    report.update(variant=variant, seconds=SECONDS, offloaded=status["offloaded_statements"],
                  local_reads=status["local_statements"], restarts=status["restarts"],
                  workers_left=sorted(left),
                  zombies=sorted(_soak.zombie_children() & set(tally.killed)))
    print(f"\nkill soak {variant}: " + json.dumps(report, indent=1))

    assert report["integrity"] == [("ok",)]
    assert report["missing_acknowledged"] == []
    assert report["raised_but_present"] == []
    assert report["doomed_acknowledged"] == []
    assert report["half_pairs"] == {}
    assert report["torn_reads"] == 0
    assert left == set(), "worker processes outlived close() and shutdown()"
    assert report["zombies"] == [], "killed workers were never reaped"
    # Errors: a killed worker's, at most one per kill, and the doomed commits', each of
    # the class the caller expects.
    died = sum(n for (phase, _, message), n in tally.errors.items()
               if phase == "read" and "died" in message)
    assert died <= tally.kills
    driver = sqlite3 if variant == "sqlite3" else _testdriver
    for phase, cls, message in tally.errors:
        if phase == "commit-doomed":
            assert cls is driver.IntegrityError and "FOREIGN KEY" in message, cls
        else:
            assert phase == "read", report["errors"]
            assert issubclass(cls, mpsqlite.WorkerDied), cls
            assert issubclass(cls, driver.OperationalError), cls
    assert len(tally.failed) == tally.errors_in("commit-doomed") > 0
    # The soak did what it claims: commits, worker kills, and reads run on workers.
    assert report["acknowledged"] > 0 and tally.kills > 0 and status["restarts"] > 0
    assert tally.reads > 0 and status["offloaded_statements"] >= tally.reads // 2, report


def test_a_commit_in_flight_runs_in_the_caller_and_outlives_every_worker(tmp_path):
    """With driver=, the commit runs on the driver's connection in the calling process:
    killing every worker while it is in flight (after the COMMIT was issued) neither fails
    it nor leaves its outcome in doubt; the read a worker was serving pays instead."""
    hold = tmp_path / "hold"
    hold.mkdir()
    path = tmp_path / "held.db"
    _soak.create(path)
    con = mpsqlite.connect(str(path), workers=2, driver="tests.reliability._testdriver",
                           driver_kwargs={"hold": str(hold)})
    try:
        sql = "select id, pair from t order by id"  # 2000 rows: a result the worker holds
        assert len(con.execute(sql).fetchall()) == 2 * _soak.PREFILL
        pending = con.execute(sql)
        assert pending.fetchone() is not None
        assert con.pool_status()["offloaded_statements"] == 1
        workers = worker_pids(con)
        assert workers, "the heavy read started no worker"
        con.execute("insert into t(pair, side) values (?, 0)", (7,))
        con.execute("insert into t(pair, side) values (?, 1)", (7,))
        killed: list[int] = []

        def _kill_while_committing() -> None:
            marker = hold / "committing"
            deadline = time.monotonic() + 30
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.005)
            for pid in worker_pids(con):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            for pid in killed:
                wait_fully_exited(pid)
            (hold / "proceed").touch()

        helper = threading.Thread(target=_kill_while_committing, daemon=True)
        helper.start()
        con.commit()  # the minidriver is threadsafety 1: the commit runs in this thread
        helper.join(30)
        assert int((hold / "committing").read_text()) == os.getpid()
        assert set(killed) == workers
        with closing(sqlite3.connect(str(path))) as plain:
            assert plain.execute("select count(*) from t where pair = 7").fetchone() == (2,)
        with pytest.raises(_testdriver.OperationalError, match="died") as died:
            pending.fetchall()  # caught as the driver's class, and as mpsqlite's
        assert isinstance(died.value, mpsqlite.WorkerDied)
        assert len(con.execute(sql).fetchall()) == 2 * _soak.PREFILL + 2  # a new worker
        assert con.pool_status()["offloaded_statements"] == 2
    finally:
        con.close()
        mpsqlite.shutdown()


def test_a_worker_killed_as_it_starts_costs_one_clear_error(tmp_path, monkeypatch):
    """The kill lands between the worker's start and the caller's first message to it:
    one WorkerDied, and the pool still has room for the next worker."""
    path = tmp_path / "start.db"
    _soak.create(path)
    con = mpsqlite.connect(str(path), workers=1)
    real = subprocess.Popen

    class _KilledAtOnce(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            os.kill(self.pid, signal.SIGKILL)
            self.wait()

    try:
        assert len(con.execute(_soak.READ_SQL).fetchall()) == _soak.PREFILL  # judged heavy
        monkeypatch.setattr(subprocess, "Popen", _KilledAtOnce)
        with pytest.raises(mpsqlite.WorkerDied, match="died"):
            con.execute(_soak.READ_SQL)
        monkeypatch.setattr(subprocess, "Popen", real)
        assert len(con.execute(_soak.READ_SQL).fetchall()) == _soak.PREFILL
        assert con.pool_status()["offloaded_statements"] == 1
    finally:
        con.close()
        mpsqlite.shutdown()

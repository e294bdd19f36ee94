"""Process lifecycle of mpsqlite's workers: they start only when a read is worth one, die
with their parent (idle or busy, even while a forked child lives), stop at shutdown() and
at interpreter exit, linger a while after the last connection closes, and a forked child
never uses its parent's workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import mpsqlite
from mpsqlite import _database
from tests.core._heavy import BIG, fill_big, mark_heavy, offload, run_remote
from tests.core._procs import child_pids, still_running, wait_until, worker_pids

pytestmark = pytest.mark.timeout(90)

#: How long workers may outlive their parent.
_PARENT_DEATH_GRACE_S = 5.0

# Prepares argv[1] and leaves ``conn`` with two idle workers (or, with argv[2] == "busy",
# one of them running an endless query), and prints the workers' pids.
_WORKERS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, time
    import mpsqlite

    def spin(n, marker):
        if marker and n == 100:
            open(marker, "w").close()
        return n

    COUNT = ("with recursive c(n) as (select 1 union all select n + 1 from c where n < ?) "
             "select count(spin(n, ?)) from c")
    conn = mpsqlite.connect(sys.argv[1], workers=2, check_same_thread=False)
    conn.create_function("spin", 2, spin)
    conn.execute("create table big(x)")
    conn.executemany("insert into big values (?)", [(i,) for i in range(1500)])
    conn.commit()
    conn.execute("select x from big").fetchall()
    second = mpsqlite.connect(sys.argv[1], workers=2)
    held = [c.execute("select x from big") for c in (conn, second)]  # two workers
    for cur in held:
        cur.fetchall()
    if sys.argv[2] == "busy":
        conn.execute(COUNT, (30000, "")).fetchall()  # heavy by CPU
        marker = sys.argv[1] + ".running"
        threading.Thread(target=lambda: conn.execute(COUNT, (10**12, marker)).fetchall(),
                         daemon=True).start()
        while not os.path.exists(marker):
            time.sleep(0.01)
    print(json.dumps([w["pid"] for w in conn.pool_status()["workers"]]), flush=True)
    """
)


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("worker_state", ["idle", "busy"])
def test_workers_die_with_their_parent(db_path, worker_state):
    parent = _spawn(_WORKERS_SCRIPT + "\ntime.sleep(300)\n", str(db_path), worker_state)
    try:
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 2
        assert still_running(pids, 0) == pids
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    assert still_running(pids, _PARENT_DEATH_GRACE_S) == []


_FORK_AND_WAIT = textwrap.dedent(
    """
    child = os.fork()
    if child == 0:
        time.sleep(300)
        os._exit(0)
    print(child, flush=True)
    time.sleep(300)
    """
)


def test_workers_die_with_their_parent_while_a_forked_child_lives(db_path):
    """The child must not keep the workers' lifelines open."""
    parent = _spawn(_WORKERS_SCRIPT + _FORK_AND_WAIT, str(db_path), "idle")
    child = None
    try:
        pids = json.loads(parent.stdout.readline())
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        assert still_running(pids, _PARENT_DEATH_GRACE_S) == []
        assert still_running([child], 0) == [child]  # the child itself lives on
    finally:
        if child is not None:
            try:
                os.kill(child, 9)
            except ProcessLookupError:
                pass
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()


_SHUTDOWN_SCRIPT = _WORKERS_SCRIPT + textwrap.dedent(
    """
    in_memory = mpsqlite.connect(":memory:")
    in_memory.execute("create table m(x)")
    mpsqlite.shutdown()
    print(json.dumps(mpsqlite.pool_status()[0]["workers"]), flush=True)
    outcome = {
        "read": conn.execute("select count(*) from big").fetchone()[0],
        "heavy read": len(conn.execute("select x from big").fetchall()),
    }
    conn.execute("insert into big values (-1)")
    conn.commit()
    outcome["write"] = conn.execute("select count(*) from big").fetchone()[0]
    in_memory.execute("insert into m values (1)")
    outcome["memory"] = in_memory.execute("select count(*) from m").fetchone()[0]
    print(json.dumps(outcome), flush=True)
    time.sleep(300)
    """
)


def test_shutdown_stops_every_worker_and_connections_go_on(db_path):
    script = _spawn(_SHUTDOWN_SCRIPT, str(db_path), "idle")
    try:
        pids = json.loads(script.stdout.readline())
        assert len(pids) == 2
        assert json.loads(script.stdout.readline()) == []
        assert still_running(pids, 5) == []
        assert script.poll() is None  # the workers went because of shutdown(), not an exit
        outcome = json.loads(script.stdout.readline())
        assert outcome == {"read": BIG, "heavy read": BIG, "write": BIG + 1, "memory": 1}
    finally:
        script.kill()
        script.wait()
        script.stdout.close()


@pytest.mark.parametrize("worker_state", ["idle", "busy"])
def test_interpreter_exit_leaves_no_worker_processes(db_path, worker_state):
    script = subprocess.run(
        [sys.executable, "-c", _WORKERS_SCRIPT, str(db_path), worker_state],
        stdout=subprocess.PIPE, text=True, timeout=60,
    )
    assert script.returncode == 0
    pids = json.loads(script.stdout.splitlines()[0])
    assert len(pids) == 2
    assert still_running(pids, 5) == []


def test_shutdown_in_process_leaves_no_child_of_ours(mp_connect, tmp_path):
    for name in ("a.db", "b.db"):
        conn = mp_connect(tmp_path / name)
        fill_big(conn)
        offload(conn, "select x from big")
    pids = {w["pid"] for status in mpsqlite.pool_status() for w in status["workers"]}
    assert len(pids) >= 2
    mpsqlite.shutdown()
    assert still_running(list(pids), 5) == []
    assert child_pids() & pids == set()
    assert all(status["workers"] == [] for status in mpsqlite.pool_status())


def test_workers_linger_after_the_last_close_then_stop(mpsqlite, db_path, monkeypatch):
    monkeypatch.setattr(_database, "LINGER_SECONDS", 60.0)
    conn = mpsqlite.connect(str(db_path), workers=1)
    fill_big(conn)
    offload(conn, "select x from big")
    pids = worker_pids(conn)
    conn.close()
    lingering = [s for s in mpsqlite.pool_status() if s["database"] == str(db_path)]
    assert [{w["pid"] for w in s["workers"]} for s in lingering] == [pids]
    again = mpsqlite.connect(str(db_path), workers=1)
    assert run_remote(again, "select x from big") == [(i,) for i in range(BIG)]
    assert worker_pids(again) == pids  # the lingering worker served it
    monkeypatch.setattr(_database, "LINGER_SECONDS", 0.2)
    again.close()
    wait_until(lambda: all(s["database"] != str(db_path) for s in mpsqlite.pool_status()),
               what="the unused database to be dropped")
    assert still_running(list(pids), 5) == []


def test_one_reaper_thread_serves_every_lingering_database(mpsqlite, tmp_path):
    for i in range(3):
        conn = mpsqlite.connect(str(tmp_path / f"{i}.db"), workers=1)
        fill_big(conn)
        offload(conn, "select x from big")
        conn.close()
    reapers = [t for t in threading.enumerate() if t.name == "mpsqlite-reaper"]
    assert len(reapers) == 1
    mpsqlite.shutdown()


def test_a_close_wakes_the_reaper_only_to_make_it_wake_sooner(mpsqlite, db_path,
                                                             monkeypatch):
    monkeypatch.setattr(_database, "LINGER_SECONDS", 60.0)
    conn = mpsqlite.connect(str(db_path), workers=1)
    fill_big(conn)
    offload(conn, "select x from big")  # its workers make the database linger
    conn.close()
    wait_until(lambda: _database.registry._reaper_due > time.monotonic() + 1,
               what="the reaper to wait")  # for this database, or an earlier one's 10 s
    wakes = []
    wake = _database.registry._wake
    monkeypatch.setattr(wake, "notify", lambda n=1: wakes.append(n) or type(wake).notify(
        wake, n))
    for _ in range(50):  # a connection per request: each close is the last
        mpsqlite.connect(str(db_path), workers=1).close()
    assert wakes == []  # the reaper's deadline was already the earliest
    monkeypatch.setattr(_database, "LINGER_SECONDS", 0.2)
    mpsqlite.connect(str(db_path), workers=1).close()
    assert wakes == [1]
    wait_until(lambda: all(s["database"] != str(db_path) for s in mpsqlite.pool_status()),
               what="the unused database to be dropped")


def _child_after_fork(db_path, parent_pids: set[int], write_fd: int) -> int:
    """Body of the forked child: use mpsqlite afresh, report what it saw."""
    child = mpsqlite.connect(str(db_path), workers=2)
    rows = child.execute("select count(*) from big").fetchall()
    heavy = len(child.execute("select x from big").fetchall())
    heavy += len(child.execute("select x from big").fetchall())
    child.execute("insert into big values (-1, 'child')")
    child.commit()
    pids = sorted(worker_pids(child))
    offloaded = child.pool_status()["offloaded_statements"]
    child.close()
    mpsqlite.shutdown()
    report = {"rows": rows, "heavy": heavy, "pids": pids, "offloaded": offloaded,
              "shared": sorted(set(pids) & parent_pids)}
    os.write(write_fd, json.dumps(report).encode())
    return 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_child_never_uses_its_parents_workers(mp_connect, db_path):
    table = mp_connect()
    fill_big(table)
    sql = "select x from big"
    mark_heavy(table, sql)
    run_remote(table, sql)
    parent_pids = worker_pids(table)
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            code = _child_after_fork(db_path, parent_pids, write_fd)
        except BaseException as exc:  # noqa: BLE001 - reported through the pipe
            os.write(write_fd, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(child, 0)
    assert "error" not in report, report["error"]
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert report["rows"] == [[BIG]] and report["heavy"] == 2 * BIG
    assert report["offloaded"] == 1 and len(report["pids"]) == 1
    assert report["shared"] == []
    assert still_running(report["pids"], 5) == []
    # the parent's workers are untouched by the child's use and shutdown
    assert len(run_remote(table, sql)) == BIG + 1
    assert worker_pids(table) == parent_pids
    assert table.pool_status()["restarts"] == 0


_COLLECTED_INSIDE_OUR_LOCKS = textwrap.dedent("""
    import gc, sys
    from mpsqlite import _database, connect
    path = sys.argv[1]

    def garbage(write):
        con = connect(path, check_same_thread=False)
        if write:
            con.execute("insert into t values (1)")  # holds the writer gate
        con.me = con  # a cycle: only the collector frees it
        return con._db

    gc.disable()
    keep = connect(path)
    db = keep._db
    refs = db.refs
    garbage(False)
    holding = garbage(True)
    assert db.refs == refs + 2 and holding.gate.held
    # The collection runs inside locks that a connection's release takes again (as one
    # that an allocation sets off inside the registry's or the gate's lock would).
    with _database.registry.lock, db.gate._lock:
        gc.collect()
    other = connect(path, timeout=5)  # lets go of what was put off
    assert db.refs == refs + 1, db.refs
    other.execute("insert into t values (2)")  # the collected holder's gate was given on
    other.commit()
    print("ok", flush=True)
""")


def test_a_connection_collected_inside_mpsqlite_s_locks_does_not_hang(db_path):
    """A connection dropped without close() in a reference cycle is finalized by the garbage
    collector, wherever it runs: it once took, from its finalizer, locks that the thread
    the collection interrupted was holding (DiskCache's suite hung so)."""
    import sqlite3

    with sqlite3.connect(db_path) as setup:
        setup.execute("create table t(x)")
    out = subprocess.run([sys.executable, "-c", _COLLECTED_INSIDE_OUR_LOCKS, str(db_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok"]

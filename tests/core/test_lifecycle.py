"""Process lifecycle of mpsqlite pools: workers die with their parent, shutdown() and
interpreter exit leave no worker processes, and a forked child gets its own pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ._procs import still_running, worker_pids

pytestmark = pytest.mark.timeout(90)

#: How long workers may outlive their parent (the brief asks for 2 seconds).
_PARENT_DEATH_GRACE_S = 2.0


@pytest.fixture
def table(mp_connect):
    """An mpsqlite connection (every statement in a worker) with ``t(x)`` rows 1, 2, 3."""
    conn = mp_connect(local_reads=False)
    conn.execute("create table t(x)")
    conn.executemany("insert into t values (?)", [(1,), (2,), (3,)])
    conn.commit()
    return conn


_PARENT_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    import mpsqlite
    conn = mpsqlite.connect(sys.argv[1], workers=2, local_reads=False)
    conn.execute("select 1").fetchall()
    if sys.argv[2] == "busy":
        query = "with recursive c(n) as (select 1 union all select n + 1 from c) "
        query += "select count(*) from c"
        threading.Thread(target=lambda: conn.execute(query).fetchall(), daemon=True).start()
        while not any(w["state"] == "busy" for w in conn.pool_status()["workers"]):
            time.sleep(0.01)
    print(json.dumps([w["pid"] for w in conn.pool_status()["workers"]]), flush=True)
    time.sleep(300)
    """
)


@pytest.mark.parametrize("worker_state", ["idle", "busy"])
def test_workers_die_with_their_parent(db_path, worker_state):
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT_SCRIPT, str(db_path), worker_state],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 2
        assert still_running(pids, 0) == pids
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    assert still_running(pids, _PARENT_DEATH_GRACE_S) == []


_SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import mpsqlite
    on_file = mpsqlite.connect(sys.argv[1], workers=2)
    in_memory = mpsqlite.connect(":memory:")
    for conn in (on_file, in_memory):
        conn.execute("select 1").fetchall()
    pids = [w["pid"] for p in mpsqlite.pool_status() for w in p["workers"]]
    print(json.dumps(pids), flush=True)
    if sys.argv[2] == "shutdown":
        mpsqlite.shutdown()
        outcome = {}
        for name, sql in (("write", "create table t(x)"), ("read", "select 1")):
            try:
                on_file.execute(sql).fetchall()
                outcome[name] = "no error"
            except Exception as exc:
                outcome[name] = [c.__name__ for c in type(exc).__mro__]
        print(json.dumps(outcome), flush=True)
        time.sleep(300)
    """
)


def test_shutdown_leaves_no_worker_processes(db_path):
    script = subprocess.Popen(
        [sys.executable, "-c", _SHUTDOWN_SCRIPT, str(db_path), "shutdown"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pids = json.loads(script.stdout.readline())
        json.loads(script.stdout.readline())
        assert len(pids) == 3
        assert still_running(pids, 5) == []
        assert script.poll() is None  # the workers went because of shutdown()
    finally:
        script.kill()
        script.wait()
        script.stdout.close()


@pytest.mark.parametrize("statement", ["write", "read"])
def test_connection_used_after_shutdown_raises(db_path, statement):
    """After shutdown() a still-open connection raises sqlite3.Error (no hang, no silent use)."""
    script = subprocess.Popen(
        [sys.executable, "-c", _SHUTDOWN_SCRIPT, str(db_path), "shutdown"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        script.stdout.readline()
        outcome = json.loads(script.stdout.readline())[statement]
        assert "Error" in outcome, f"{statement} after shutdown() gave {outcome!r}"
    finally:
        script.kill()
        script.wait()
        script.stdout.close()


def test_interpreter_exit_leaves_no_worker_processes(db_path):
    script = subprocess.run(
        [sys.executable, "-c", _SHUTDOWN_SCRIPT, str(db_path), "exit"],
        stdout=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    assert script.returncode == 0
    pids = json.loads(script.stdout.splitlines()[0])
    assert len(pids) == 3
    assert still_running(pids, 5) == []


def _child_after_fork(db_path: Path, parent_pids: set[int], write_fd: int) -> int:
    """Body of the forked child: use mpsqlite afresh, report what it saw."""
    import mpsqlite

    child = mpsqlite.connect(str(db_path), workers=2)
    rows = child.execute("select x from t order by x").fetchall()
    child.execute("insert into t values (100)")
    child.commit()
    pids = sorted(worker_pids(child))
    child.close()
    mpsqlite.shutdown()
    report = {"rows": rows, "pids": pids, "shared": sorted(set(pids) & parent_pids)}
    os.write(write_fd, json.dumps(report).encode())
    return 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_child_gets_its_own_pool(table, db_path):
    table.execute("select count(*) from t").fetchall()
    parent_pids = worker_pids(table)
    restarts = table.pool_status()["restarts"]
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
    assert [tuple(r) for r in report["rows"]] == [(1,), (2,), (3,)]
    assert len(report["pids"]) == 2
    assert report["shared"] == []
    assert still_running(report["pids"], 5) == []
    # the parent's pool is untouched by the child's use and shutdown
    assert table.execute("select x from t order by x").fetchall() == [(1,), (2,), (3,), (100,)]
    assert worker_pids(table) == parent_pids
    assert table.pool_status()["restarts"] == restarts

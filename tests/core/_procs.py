"""Process helpers shared by the mpsqlite fault and lifecycle tests."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest


def gone(pid: int) -> bool:
    """True if no process ``pid`` runs any more (an unreaped zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def still_running(pids, within: float) -> list[int]:
    """Poll until every pid is gone or ``within`` seconds pass; return those still running."""
    deadline = time.monotonic() + within
    while True:
        alive = [pid for pid in pids if not gone(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def worker_pids(conn) -> set[int]:
    """Pids of the worker processes in ``conn``'s pool."""
    return {w["pid"] for w in conn.pool_status()["workers"]}


def child_pids(parent: int | None = None) -> set[int]:
    """Pids of the live (not zombie) children of ``parent`` (default: this process), from /proc."""
    parent = os.getpid() if parent is None else parent
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0")) == parent and not fields.get("State", "").strip(
        ).startswith("Z"):
            found.add(int(name))
    return found


def reaped(pid: int) -> bool:
    """Whether ``pid`` is no process of ours at all: not running, and no zombie left unreaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return f"PPid:\t{os.getpid()}\n" not in status  # the pid now names someone else's process


def fully_exited(pid: int) -> bool:
    """Whether every thread of ``pid`` has exited (so its sockets are closed), not only its
    leader: a killed process's leader turns zombie before its other threads are torn down."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    return False
        except OSError:
            pass
    return True


def wait_fully_exited(pid: int, within: float = 10.0) -> None:
    """Poll until ``pid`` has fully exited; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not fully_exited(pid):
        if time.monotonic() > deadline:
            pytest.fail(f"process {pid} still running {within} s after it was killed")
        time.sleep(0.01)


def wait_until(predicate, within: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate()`` until it is true; fail the test after ``within`` seconds.

    For states that another thread or process reaches and that offer no event
    to wait on (a writer queued in the gate, a worker gone)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        time.sleep(0.005)


def in_thread(call) -> tuple[threading.Thread, threading.Event, list[BaseException]]:
    """Start ``call()`` in a daemon thread: the thread, an event set when it ends, and the
    list that receives what it raised."""
    done = threading.Event()
    errors: list[BaseException] = []

    def _body() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=_body, daemon=True)
    thread.start()
    return thread, done, errors


def committed_rows(db_path: Path) -> list[tuple]:
    """Rows of table ``t`` as an independent stdlib connection sees them (committed only)."""
    with closing(sqlite3.connect(str(db_path))) as check:
        return check.execute("select x from t order by x").fetchall()


@contextmanager
def interrupting(conn) -> Iterator[None]:
    """Call ``conn.interrupt()`` from another thread every 20 ms while the block runs."""
    done = threading.Event()

    def _keep_interrupting() -> None:
        while not done.wait(0.02):
            conn.interrupt()

    helper = threading.Thread(target=_keep_interrupting, daemon=True)
    helper.start()
    try:
        yield
    finally:
        done.set()
        helper.join()


def assert_interrupt_stops_endless_query(conn) -> None:
    """interrupt() from another thread ends an endless query with 'interrupted'."""
    with interrupting(conn), pytest.raises(sqlite3.OperationalError, match="interrupted"):
        conn.execute(
            "with recursive c(n) as (select 1 union all select n + 1 from c) "
            "select count(*) from c"
        ).fetchall()
    assert conn.execute("select 1").fetchone() == (1,)


class LockHolder:
    """Another process that runs ``statements`` on ``path`` (autocommit off, so a BEGIN
    there holds its lock) and holds what they took until :meth:`release` runs ``end``."""

    _CODE = ("import sqlite3, sys\n"
             "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "for statement in sys.argv[2:-1]:\n"
             "    c.execute(statement)\n"
             "print('locked', flush=True)\n"
             "sys.stdin.read()\n"
             "c.execute(sys.argv[-1])\n")

    def __init__(self, path: Path, *statements: str, end: str = "rollback") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self._CODE, str(path), *statements, end],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "locked\n"

    def release(self) -> None:
        """Run ``end`` and wait for the process; it must exit cleanly. Idempotent."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            assert self.proc.wait(30) == 0

"""Process helpers shared by the mpsqlite fault and lifecycle tests."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import closing
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


def committed_rows(db_path: Path) -> list[tuple]:
    """Rows of table ``t`` as an independent stdlib connection sees them (committed only)."""
    with closing(sqlite3.connect(str(db_path))) as check:
        return check.execute("select x from t order by x").fetchall()


def assert_interrupt_stops_endless_query(conn) -> None:
    """interrupt() from another thread ends an endless query with 'interrupted'."""
    done = threading.Event()

    def _keep_interrupting() -> None:
        while not done.wait(0.02):
            conn.interrupt()

    helper = threading.Thread(target=_keep_interrupting, daemon=True)
    helper.start()
    try:
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            conn.execute(
                "with recursive c(n) as (select 1 union all select n + 1 from c) "
                "select count(*) from c"
            ).fetchall()
    finally:
        done.set()
        helper.join()
    assert conn.execute("select 1").fetchone() == (1,)

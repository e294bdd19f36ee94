"""A full disk: writes fail as sqlite3's do, nothing committed is lost, and mpsqlite recovers.

The test runs this module as a child script under ``unshare -m`` (``-rm`` when
not root): in its private mount namespace the child mounts two small tmpfs,
and on each one fills a database until writes fail, once with plain sqlite3
and once with mpsqlite. Then it deletes a filler file, so space returns, and
writes and reads again, on a worker too, on the same connection and a new one.
It prints one JSON line, which the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

#: Size of each tmpfs, and of the file deleted to give space back.
FS_SIZE = "1m"
FILLER_BYTES = 256 * 1024
#: Small rows first: a read of them all returns enough rows to run on a worker.
SMALL_ROWS = 1200
BLOB = 2000
HEAVY_SQL = "select id, length(v) from t order by id"
REFUSED = 3  # the child's exit status when the kernel refuses the namespace or the mount
_ROOT = Path(__file__).resolve().parents[2]


def _failure(exc: BaseException, where: str) -> dict[str, Any]:
    return {"where": where, "class": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": str(exc), "errorname": getattr(exc, "sqlite_errorname", None)}


def _attempt(con: Any, row_id: int) -> dict[str, Any] | None:
    """Insert one row and commit: None, or what failed and where."""
    where = "insert"
    try:
        con.execute("insert into t values (?, randomblob(?))", (row_id, BLOB))
        where = "commit"
        con.commit()
    except sqlite3.Error as exc:
        return _failure(exc, where)
    return None


def _fill(con: Any, directory: str) -> dict[str, Any]:
    """Write until the disk is full; what failed, where, and the ids acknowledged."""
    con.execute("create table t(id integer primary key, v blob)")
    con.executemany("insert into t values (?, ?)", ((i, b"s" * 50) for i in range(SMALL_ROWS)))
    con.commit()
    acked = list(range(SMALL_ROWS))
    with open(os.path.join(directory, "filler"), "wb") as f:
        f.write(b"f" * FILLER_BYTES)
    next_id = SMALL_ROWS
    while (first := _attempt(con, next_id)) is None:
        acked.append(next_id)
        next_id += 1
        if next_id > 10_000:
            raise AssertionError(f"{directory} never filled up")
    again = _attempt(con, next_id + 1)  # still full: the next write fails the same way
    return {"first": first, "again": again, "acked": acked, "next_id": next_id + 2,
            "in_transaction": con.in_transaction,
            "count_while_full": con.execute("select count(*) from t").fetchone()[0]}


def _plain(directory: str) -> dict[str, Any]:
    con = sqlite3.connect(os.path.join(directory, "plain.db"))
    con.execute("pragma journal_mode=wal")  # as mpsqlite runs a file database
    try:
        return {k: v for k, v in _fill(con, directory).items() if k != "acked"}
    finally:
        con.close()


def _offloaded(con: Any) -> int:
    return con.pool_status()["offloaded_statements"]


def _heavy_on_worker(con: Any) -> int:
    """Run HEAVY_SQL, which must run on a worker; the number of rows."""
    before = _offloaded(con)
    rows = con.execute(HEAVY_SQL).fetchall()
    if _offloaded(con) != before + 1:
        raise AssertionError("the heavy read did not run on a worker")
    return len(rows)


def _write(con: Any, row_id: int) -> None:
    con.execute("insert into t values (?, randomblob(?))", (row_id, BLOB))
    con.commit()


def _mpsqlite(directory: str) -> dict[str, Any]:
    import mpsqlite

    path = os.path.join(directory, "mp.db")
    con = mpsqlite.connect(path, workers=2)
    report = _fill(con, directory)
    acked, next_id = report.pop("acked"), report.pop("next_id")
    # Its first run is in the caller and marks it heavy; the next starts a worker, on the
    # full disk.
    report["read_while_full"] = len(con.execute(HEAVY_SQL).fetchall())
    report["heavy_read_while_full"] = _heavy_on_worker(con)
    os.remove(os.path.join(directory, "filler"))
    # Space is back. A new connection writes first, without waiting for the one whose
    # commit failed: that one holds no transaction now, so it must not hold the gate.
    fresh = mpsqlite.connect(path, workers=2, timeout=2)
    _write(fresh, next_id)
    acked.append(next_id)
    _write(con, next_id + 1)
    acked.append(next_id + 1)
    report["same_connection_rows"] = _heavy_on_worker(con)
    report["new_connection_rows"] = _heavy_on_worker(fresh)
    report["same_connection_point_read"] = con.execute(
        "select count(*) from t where id = ?", (next_id,)).fetchone()[0]
    report["acked_count"] = len(acked)
    fresh.close()
    con.close()
    mpsqlite.shutdown()
    with closing(sqlite3.connect(path)) as check:
        present = {r[0] for r in check.execute("select id from t")}
        report["integrity"] = check.execute("pragma integrity_check").fetchone()[0]
    report["missing"] = sorted(set(acked) - present)
    return report


def _child() -> None:
    """In a private mount namespace: two small tmpfs, one database each; one JSON line."""
    base = tempfile.mkdtemp(prefix="mpsqlite-full-")
    dirs = []
    for name in ("plain", "mp"):
        d = os.path.join(base, name)
        os.mkdir(d)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", d],
                                 capture_output=True, text=True)
        if mounted.returncode:
            print(json.dumps({"refused": f"mount tmpfs: {mounted.stderr.strip()}"}))
            sys.exit(REFUSED)
        dirs.append(d)
    try:
        print(json.dumps({"plain": _plain(dirs[0]), "mpsqlite": _mpsqlite(dirs[1])}))
    finally:
        for d in dirs:
            subprocess.run(["umount", "-l", d], check=False)
        shutil.rmtree(base, ignore_errors=True)


def _unshare() -> list[str]:
    tool = shutil.which("unshare")
    if tool is None:
        pytest.fail("unshare (util-linux) is not installed: the disk-full test needs it to "
                    "mount a small tmpfs in a private mount namespace")
    return [tool, "-m"] if os.geteuid() == 0 else [tool, "-rm"]


def test_a_full_disk_fails_writes_as_sqlite3_loses_nothing_and_recovers():
    proc = subprocess.run(
        [*_unshare(), sys.executable, "-m", "tests.reliability.test_disk_full", "child"],
        cwd=_ROOT, capture_output=True, text=True, timeout=100)
    if proc.returncode == REFUSED or "unshare failed" in proc.stderr:
        pytest.skip(f"the kernel refuses a private mount namespace or tmpfs here: "
                    f"{proc.stdout.strip() or proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\ndisk full: " + json.dumps(result, indent=1))
    plain, mp = result["plain"], result["mpsqlite"]

    # The same error as sqlite3, at the same point, both times.
    if sys.version_info >= (3, 11):  # sqlite3's exceptions name their error from 3.11
        assert plain["first"]["errorname"] == "SQLITE_FULL", plain
    assert plain["first"]["message"] == "database or disk is full", plain
    assert mp["first"] == plain["first"]
    assert mp["again"] == plain["again"] is not None
    assert mp["in_transaction"] == plain["in_transaction"]
    assert mp["count_while_full"] == mp["acked_count"] - 2
    # Reads keep working while full, on a worker too; then writes, on both connections.
    assert mp["read_while_full"] == mp["heavy_read_while_full"] == mp["acked_count"] - 2
    assert mp["same_connection_rows"] == mp["new_connection_rows"] == mp["acked_count"]
    assert mp["same_connection_point_read"] == 1
    # Nothing acknowledged is lost.
    assert mp["missing"] == [] and mp["integrity"] == "ok"


if __name__ == "__main__" and sys.argv[1:] == ["child"]:
    _child()

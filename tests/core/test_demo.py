"""``python -m mpsqlite``, the threaded demo: it lists only real worker processes."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mpsqlite
from mpsqlite.__main__ import by_process, run_threads, with_functions


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_by_process_lists_only_worker_pids() -> None:
    runs = Counter({100: 2, 200: 3, 300: 1, 400: 4})
    assert by_process(runs, parent=100, workers=[200, 400, 999]) == (2, {200: 3, 400: 4}, 1)
    assert by_process(runs, parent=100, workers=[100]) == (2, {}, 8)  # never the parent


def test_statements_ran_in_child_worker_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "demo.db")
    with sqlite3.connect(path) as setup:
        setup.execute("create table t(id integer primary key, a int)")
        setup.executemany("insert into t(a) values (?)", ((i,) for i in range(20_000)))
    keep = mpsqlite.connect(path)
    try:
        _, pids = run_threads(lambda: with_functions(mpsqlite.connect(path, workers=2)), 2, 3)
        workers = [w["pid"] for w in keep.pool_status()["workers"]]
        here, per_worker, other = by_process(pids, os.getpid(), workers)
        assert here + sum(per_worker.values()) + other == 6 == sum(pids.values())
        assert per_worker and os.getpid() not in per_worker and other == 0
        assert {_parent_of(pid) for pid in per_worker} == {os.getpid()}  # our children
    finally:
        keep.close()  # the idle pool stops by itself (no shutdown(): other tests' pools live)


def test_demo_output_names_this_process_apart_from_the_workers() -> None:
    proc = subprocess.run([sys.executable, "-m", "mpsqlite", "--rows", "20000", "--threads",
                           "2", "--rounds", "3", "--workers", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    parent = int(re.search(r"all in process (\d+)", proc.stdout)[1])
    listed = {int(p) for p in re.findall(r"(\d+): \d+", proc.stdout.split("per worker process")[1]
                                         .split("\n")[0])}
    workers = {int(p) for p in re.search(r"\(pids ([\d, ]+)\)", proc.stdout)[1].split(", ")}
    assert listed and parent not in listed and listed <= workers

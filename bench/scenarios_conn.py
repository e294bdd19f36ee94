"""Connection-cost scenarios: ``connect`` (a connection per request) and ``fresh`` (a new file).

- ``connect``: each operation opens a connection to one WAL file, reads one row by primary
  key, inserts one row, commits and closes, as a web handler without a connection pool does.
  Both sides use the same file and each its default durability (plain ``sqlite3``: the default
  ``synchronous``, FULL; mpsqlite: group commit). Threads: ``connect_threads`` (1 and 4).
- ``fresh``: each operation creates a new database file, creates a table, inserts a row,
  commits, reads it back and closes (files are removed after each timed run, outside the
  timing). The figure is milliseconds per file and the cost ratio mpsqlite / plain; the
  child processes this process had during each side's runs (from ``/proc``) say how many
  worker processes mpsqlite started for it (none is expected).

Both compare one mpsqlite arm with its defaults (no worker count is chosen: none is needed).
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import data, sides
from .resources import child_pids
from .runner import Arm, Context, Sample, log, measure_interleaved, result_rows, run_threads
from .scenarios_db import PAYLOAD

CONNECT_ROWS = 1_000  # rows in the connect scenario's table before the run
_SAMPLE_S = 0.01  # how often the fresh scenario looks for child processes


def default_arms(ctx: Context) -> list[tuple[str, int | None]]:
    """(side, None) for each side chosen: plain sqlite3 and mpsqlite with its defaults."""
    return [(side, None) for side in (sides.PLAIN, sides.MP) if side in ctx.sides]


def prepare_w(path: Path, rows: int) -> None:
    """A WAL file with table ``w(id, thread, payload)`` holding ``rows`` rows (plain sqlite3)."""
    data._remove_db(path)
    con = sides.connect(sides.PLAIN, path)
    try:
        con.execute("pragma journal_mode=wal")
        con.execute("create table w (id integer primary key, thread int, payload text)")
        con.executemany("insert into w (thread, payload) values (?, ?)",
                        ((-1, PAYLOAD) for _ in range(rows)))
        con.commit()
    finally:
        con.close()


def count_rows(path: Path, table: str) -> int:
    """Rows in ``table`` of ``path``, counted by plain sqlite3."""
    con = sides.connect(sides.PLAIN, path)
    try:
        return con.execute(f"select count(*) from {table}").fetchone()[0]
    finally:
        con.close()


def run_connect(ctx: Context) -> list[dict[str, Any]]:
    """Connect, point read, insert, commit, close per operation; 1 and 4 threads."""
    m = ctx.mode
    path = ctx.work_dir / "connect.db"
    prepare_w(path, CONNECT_ROWS)
    counter = itertools.count()

    def factory(side: str) -> Callable[[int], Callable[[], Any]]:
        def make(i: int) -> Callable[[], Any]:
            rng = random.Random(2000 + i)

            def op() -> None:
                conn = sides.connect(side, path)
                try:
                    row = conn.execute("select payload from w where id = ?",
                                       (rng.randint(1, CONNECT_ROWS),)).fetchone()
                    if row is None:
                        raise AssertionError("point read found no row")
                    conn.execute("insert into w (thread, payload) values (?, ?)", (i, PAYLOAD))
                    conn.commit()
                finally:
                    conn.close()  # an uncommitted insert is rolled back here
                next(counter)

            return op

        return make

    arms = [Arm(side, workers, factory(side)) for side, workers in default_arms(ctx)]
    rows: list[dict[str, Any]] = []
    try:
        for threads in m.connect_threads:
            samples = measure_interleaved(arms, threads, m.conn_duration, m.warmup, m.reps,
                                          f"connect threads={threads}")
            rows += result_rows("connect", threads, arms, samples, zero_errors=("mp",),
                                unit="requests/s", file="one WAL file for both sides")
    finally:
        sides.shutdown_mp()
    committed = next(counter)
    lost = committed - (count_rows(path, "w") - CONNECT_ROWS)
    if lost:
        log(f"  connect: {committed} commits reported, {lost} of them not stored!")
    for row in rows:
        row["lost_commits"] = lost
    return rows


class _ChildWatch:
    """Distinct child pids of this process seen while a block runs (sampled from ``/proc``)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _ChildWatch:
        self._before = child_pids()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            self.seen |= child_pids() - self._before
            if self._stop.wait(_SAMPLE_S):
                break

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.seen |= child_pids() - self._before


def run_fresh(ctx: Context) -> list[dict[str, Any]]:
    """A new database file per operation: create, CREATE TABLE, insert, select, close."""
    m = ctx.mode
    folder = ctx.work_dir / "fresh"
    folder.mkdir(exist_ok=True)
    started: dict[str, set[int]] = {}
    files = itertools.count()

    def arm_for(side: str, workers: int | None) -> Arm:
        made: list[Path] = []
        started[side] = set()

        def make(i: int) -> Callable[[], Any]:
            def op() -> None:
                path = folder / f"{side}_{next(files)}.db"
                made.append(path)
                conn = sides.connect(side, path)
                try:
                    conn.execute("create table item (id integer primary key, name text)")
                    conn.execute("insert into item (name) values (?)", ("first",))
                    conn.commit()
                    got = conn.execute("select name from item").fetchall()
                finally:
                    conn.close()
                if got != [("first",)]:
                    raise AssertionError(f"fresh file read back {got!r}")

            return op

        def run(make_op: Callable[[int], Any], threads: int, duration: float) -> Sample:
            try:
                with _ChildWatch() as watch:
                    sample = run_threads(make_op, threads, duration)
                    sides.shutdown_mp()  # a worker it started would show now at the latest
            finally:
                for path in made:
                    data._remove_db(path)
                made.clear()
            started[side] |= watch.seen
            return sample

        return Arm(side, workers, make, run=run)

    arms = [arm_for(side, workers) for side, workers in default_arms(ctx)]
    try:
        samples = measure_interleaved(arms, 1, m.conn_duration, m.warmup, m.reps,
                                      "fresh threads=1")
    finally:
        sides.shutdown_mp()
    rows = result_rows("fresh", 1, arms, samples, unit="files/s",
                       processes_started={side: len(pids) for side, pids in started.items()})
    for row in rows:
        _add_costs(row)
    return rows


def _add_costs(row: dict[str, Any]) -> None:
    """Milliseconds per file per side, and the cost ratio mp / plain (1 / throughput ratio)."""
    for side in ("plain", "mp"):
        s = row.get(side)
        if s:
            s["ms_per_file"] = 1000 / s["throughput"] if s["throughput"] else None
    if row.get("ratio"):
        row["cost_ratio"] = 1 / row["ratio"]
        row["cost_ratio_min"] = 1 / row["ratio_max"]
        row["cost_ratio_max"] = 1 / row["ratio_min"]

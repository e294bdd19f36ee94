"""procs: writers in several processes on one file, as a pre-forking web server has them.

``procs`` processes (``bench._procs_child``, real separate interpreters started with
``subprocess``) of ``procs_threads`` threads each loop for ``procs_duration`` seconds: a point
read, an INSERT and a commit per attempt. Plain side: ``sqlite3`` on the recommended web
settings (WAL, ``timeout=5`` = busy_timeout 5 s, ``isolation_level="IMMEDIATE"``, default
``synchronous``); mpsqlite side: ``mpsqlite.connect(path)`` with its defaults. Each side has
its own file, prepared alike, and its own children, started once and kept for every run, so
the sides' runs interleave as everywhere else; every run starts in all children at one
wall-clock instant.

Per side: commits/s over all threads, p50/p99 and the slowest attempt (failed attempts
included: an attempt that waits 5 s and fails with ``database is locked`` is a 5 s answer),
errors by kind, and fairness: the worst thread against the median thread, ``max(median
commits / thread commits)`` over threads (1 = every thread did as much as the median; a thread
with no commit at all is counted in ``starved_threads`` and leaves fairness undefined).
Ratios: commits/s and slowest attempt, mp / plain, paired by repetition.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import sides
from .runner import Arm, Context, Sample, log, measure_interleaved, result_rows
from .scenarios_conn import count_rows, default_arms, prepare_w
from .scenarios_web import ROOT, readline_with_timeout

_START_TIMEOUT = 60.0
_START_DELAY = 0.3  # seconds between announcing a run and its start, so all children start


@dataclass
class ProcsSample(Sample):
    """A Sample with the commits of every writer thread (all processes)."""

    thread_commits: list[int] = field(default_factory=list)

    @property
    def slowest_ms(self) -> float | None:
        """The slowest attempt, failed ones included."""
        return max(self.latencies_ns) / 1e6 if self.latencies_ns else None


def fairness(commits: list[int]) -> tuple[float | None, int]:
    """(worst thread vs median thread, threads with no commit); None when a thread starved."""
    if not commits:
        return None, 0
    starved = sum(1 for c in commits if c == 0)
    median = statistics.median(commits)
    if starved or median == 0:
        return None, starved
    return max(median / c for c in commits), 0


class Children:
    """``procs`` child processes of one side, each with ``threads`` writer threads."""

    def __init__(self, side: str, path: Path, procs: int, threads: int, rows: int,
                 log_path: Path) -> None:
        self.log_file = open(log_path, "w")
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")]))
        self.procs: list[subprocess.Popen] = []
        self.committed = 0
        try:
            for _ in range(procs):
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "bench._procs_child", side, str(path), str(threads),
                     str(rows)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=self.log_file, text=True, env=env))
            for proc in self.procs:
                line = readline_with_timeout(proc, _START_TIMEOUT)
                if not line.startswith("{") or not json.loads(line).get("ready"):
                    raise RuntimeError(f"procs child did not start: {line!r}; {self.log_tail()}")
        except BaseException:
            self.close()
            raise

    def log_tail(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text()[-2000:]

    def _ask(self, proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
        line = readline_with_timeout(proc, timeout)
        if not line:
            raise RuntimeError(f"procs child gave no answer: {self.log_tail()}")
        return json.loads(line)

    def run(self, duration: float) -> ProcsSample:
        """One timed run in every child at once."""
        start = time.time() + _START_DELAY
        for proc in self.procs:
            proc.stdin.write(f"run {start!r} {duration!r}\n")
            proc.stdin.flush()
        answers = [self._ask(p, duration + _START_DELAY + 60) for p in self.procs]
        kinds: Counter = Counter()
        for a in answers:
            kinds.update(a["error_kinds"])
        commits = [c for a in answers for c in a["commits"]]
        self.committed += sum(commits)
        return ProcsSample(
            ops=sum(commits), elapsed=max(a["ended"] for a in answers) - start,
            errors=sum(sum(a["errors"]) for a in answers),
            latencies_ns=[x for a in answers for x in a["latencies_ns"]], error_kinds=kinds,
            thread_commits=commits)

    def status(self) -> list[dict[str, Any]]:
        """Every child's ``status`` answer."""
        for proc in self.procs:
            proc.stdin.write("status\n")
            proc.stdin.flush()
        return [self._ask(p, 30) for p in self.procs]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log_file.close()


def run(ctx: Context) -> list[dict[str, Any]]:
    """``procs`` x ``procs_threads`` writers per side, plain and mp interleaved."""
    m = ctx.mode
    threads = m.procs * m.procs_threads
    children: dict[str, Children] = {}
    paths: dict[str, Path] = {}
    arms: list[Arm] = []
    try:
        for side, workers in default_arms(ctx):
            path = ctx.work_dir / f"procs_{side}.db"
            prepare_w(path, m.procs_rows)
            paths[side] = path
            kids = Children(side, path, m.procs, m.procs_threads, m.procs_rows,
                            ctx.work_dir / f"procs_{side}.log")
            children[side] = kids

            def run_once(_make: Any, _threads: int, duration: float,
                         kids: Children = kids) -> Sample:
                return kids.run(duration)

            arms.append(Arm(side, workers, lambda i: (lambda: None), run=run_once))
        samples = measure_interleaved(arms, threads, m.procs_duration, m.warmup, m.reps,
                                      f"procs {m.procs}x{m.procs_threads}")
        status = {side: kids.status() for side, kids in children.items()}
    finally:
        for kids in children.values():
            kids.close()
    lost = {}
    for side, kids in children.items():
        lost[side] = kids.committed - (count_rows(paths[side], "w") - m.procs_rows)
        if lost[side]:
            log(f"  procs {side}: {kids.committed} commits reported, {lost[side]} not stored!")
    settings = {side: st[0]["settings"] for side, st in status.items()}
    pools = {side: [s["pool"] for s in st] for side, st in status.items() if side == sides.MP}
    rows = result_rows("procs", threads, arms, samples, zero_errors=("mp",), unit="commits/s",
                       processes=m.procs, threads_per_process=m.procs_threads,
                       settings=settings, lost_commits=lost, mp_pools=pools)
    for row in rows:
        add_procs_figures(row, arms, samples)
    return rows


def add_procs_figures(row: dict[str, Any], arms: list[Arm],
                      samples: dict[str, list[Sample]]) -> None:
    """Slowest attempt, fairness and starved threads per side; the paired slowest ratio."""
    by_side = {a.side: samples[a.label] for a in arms}
    for side, got in by_side.items():
        s = row.get(side)
        if not s:
            continue
        slowest = [x.slowest_ms for x in got if getattr(x, "slowest_ms", None) is not None]
        fair = [fairness(getattr(x, "thread_commits", [])) for x in got]
        s["slowest_ms"] = max(slowest) if slowest else None
        s["slowest_ms_each"] = [round(x, 2) for x in slowest]
        known = [f for f, _ in fair if f is not None]
        s["fairness"] = statistics.median(known) if known and len(known) == len(fair) else None
        s["fairness_worst"] = max(known) if known and len(known) == len(fair) else None
        s["fairness_each"] = [None if f is None else round(f, 3) for f, _ in fair]
        s["starved_threads"] = max((n for _, n in fair), default=0)
    plain, mp = by_side.get("plain"), by_side.get("mp")
    if plain and mp:
        each = [b.slowest_ms / a.slowest_ms for a, b in zip(plain, mp)
                if getattr(a, "slowest_ms", None) and getattr(b, "slowest_ms", None)]
        if each:
            row["ratio_slowest"] = statistics.median(each)
            row["ratio_slowest_min"], row["ratio_slowest_max"] = min(each), max(each)

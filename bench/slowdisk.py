"""Slowdisk scenario: durable writers when every fsync takes a few milliseconds, as on a slow disk.

The machine's own disk may fsync in microseconds (a VM's write cache), which hides what group
commit is for. Here both sides load the same ``LD_PRELOAD`` shim (``bench/slowfsync.c``,
compiled with gcc at run time into the untracked output folder) that sleeps
``fsync_delay_ms`` (default 2 ms) in fsync/fdatasync/sync_file_range before calling the real
one. Each side runs in its own child process (``bench._writer_child``) started with the same
environment; mpsqlite's worker processes inherit it. Plain sqlite3 commits at
``synchronous=FULL`` (one fdatasync of the WAL per commit); mpsqlite gets the same pragma and
answers it with group commit. The figure is commits/s; ``fsyncs`` counts the shim's calls per
side (every process of that side), so ``commits_per_fsync`` shows how many commits shared one.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from . import data
from .runner import Arm, CannotRun, Context, Sample, log, measure_interleaved, result_rows
from .scenarios_web import ROOT, readline_with_timeout

SOURCE = Path(__file__).resolve().with_name("slowfsync.c")
LIBRARY = "slowfsync.so"
_REPLY_TIMEOUT = 120.0


def build(dest_dir: Path) -> Path:
    """Compile the shim into ``dest_dir`` (again if the source is newer); CannotRun without gcc."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise CannotRun("no C compiler (gcc) on PATH to build the fsync shim; "
                        "install one (Debian: apt-get install gcc)")
    dest_dir.mkdir(parents=True, exist_ok=True)
    lib = dest_dir / LIBRARY
    if lib.exists() and lib.stat().st_mtime >= SOURCE.stat().st_mtime:
        return lib
    tmp = dest_dir / f"{LIBRARY}.{os.getpid()}.tmp"
    proc = subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(tmp), str(SOURCE), "-ldl"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"building {SOURCE.name} failed:\n{proc.stderr[-2000:]}")
    os.replace(tmp, lib)
    return lib


def preload_env(lib: Path, delay_ms: float, count_file: Path | None = None) -> dict[str, str]:
    """This process's environment plus the shim, its delay and (optionally) its call counter."""
    env = dict(os.environ, SLOWFSYNC_DELAY_MS=str(delay_ms))
    env["LD_PRELOAD"] = " ".join(p for p in (str(lib), os.environ.get("LD_PRELOAD", "")) if p)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    if count_file is not None:
        env["SLOWFSYNC_COUNT_FILE"] = str(count_file)
    else:
        env.pop("SLOWFSYNC_COUNT_FILE", None)
    return env


class _Child:
    """One side's writer process; :meth:`run` has the signature of :func:`runner.run_threads`."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._writer_child", *argv], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_file, text=True,
        )
        self._reply()  # {"ready": true}

    def _reply(self) -> dict[str, Any]:
        line = readline_with_timeout(self.proc, _REPLY_TIMEOUT)
        if not line:
            self.log_file.flush()
            raise RuntimeError(f"writer child gave no answer; log: "
                               f"{self.log_path.read_text()[-2000:]}")
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        """Send one command line and return the child's JSON answer."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def run(self, _make_op: Any, _threads: int, duration: float) -> Sample:
        """One timed run in the child (its thread count was fixed at start)."""
        r = self.ask(f"run {duration}")
        return Sample(r["ops"], r["elapsed"], r["errors"], r["latencies_ns"],
                      Counter(r["error_kinds"]))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def _prepare(path: Path) -> None:
    data._remove_db(path)
    con = sqlite3.connect(path)
    con.execute("pragma journal_mode=wal")
    con.execute("create table w (id integer primary key, thread int, payload text)")
    con.commit()
    con.close()


def run(ctx: Context) -> list[dict[str, Any]]:
    """``write_threads`` durable writers per side under the fsync shim, sides interleaved."""
    m = ctx.mode
    lib = build(ctx.build_dir or ctx.work_dir)
    threads = m.write_threads
    children: dict[str, _Child] = {}
    arms: list[Arm] = []
    paths: dict[str, Path] = {}
    counts: dict[str, Path] = {}
    try:
        for side, workers in ctx.arm_specs():
            arm = Arm(side, workers, lambda i: (lambda: None))
            name = f"slowdisk_{side}_{workers}"
            paths[arm.label] = ctx.work_dir / f"{name}.db"
            counts[arm.label] = ctx.work_dir / f"{name}.fsyncs"
            _prepare(paths[arm.label])
            env = preload_env(lib, m.fsync_delay_ms, counts[arm.label])
            child = _Child([side, str(paths[arm.label]), str(workers or "-"), str(threads)],
                           env, ctx.work_dir / f"{name}.log")
            children[arm.label] = child
            arm.run = child.run
            arms.append(arm)
        samples = measure_interleaved(
            arms, threads, m.duration, m.warmup, m.reps,
            f"slowdisk writers={threads} fsync+{m.fsync_delay_ms}ms",
        )
        status = {label: child.ask("status") for label, child in children.items()}
    finally:
        for child in children.values():
            child.close()
    lost, fsyncs, per_fsync = {}, {}, {}
    for label, st in status.items():
        con = sqlite3.connect(paths[label])
        (stored,) = con.execute("select count(*) from w").fetchone()
        con.close()
        lost[label] = st["committed"] - stored
        if lost[label]:
            log(f"  slowdisk {label}: {st['committed']} commits reported, {stored} rows stored!")
        fsyncs[label] = counts[label].stat().st_size if counts[label].exists() else 0
        per_fsync[label] = round(st["committed"] / fsyncs[label], 2) if fsyncs[label] else None
    return result_rows(
        "slowdisk", threads, arms, samples, zero_errors=("mp",), unit="commits/s",
        fsync_delay_ms=m.fsync_delay_ms, synchronous={k: v["synchronous"] for k, v in
                                                      status.items()},
        lost_commits=lost, fsyncs=fsyncs, commits_per_fsync=per_fsync,
        mp_pool={k: v["pool"] for k, v in status.items() if v["pool"]},
    )

"""Benchmark sizes and durations for the three modes: smoke (tests), quick and full."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Mode:
    """Everything that decides how big and how long a benchmark run is."""

    name: str
    rows: int  # rows in table t (point, scan, heavy, udf read from it)
    scan_rows: int  # rows one scan query fetches
    udf_rows: int  # rows the UDF query visits (one Python call each)
    threads: tuple[int, ...]  # caller thread counts for the read scenarios
    workers: tuple[int, ...]  # mpsqlite worker counts
    reps: int
    duration: float  # seconds per timed run
    warmup: float  # seconds of unrecorded warm-up per arm and configuration
    write_threads: int = 8
    orm_threads: int = 8
    orm_authors: int = 2_000
    orm_books: int = 20_000
    web_clients: int = 16
    web_duration: float = 3.0
    web_books: int = 5_000  # books seeded into the example site (authors, reviews scale)
    startup_reps: int = 5
    fsync_delay_ms: float = 2.0  # slowdisk: sleep added to every fsync/fdatasync (both sides)
    wrk_threads: int = 2  # wrk threads per wrk process (at most its connections)
    wrk_paths: int = 5_000  # request paths drawn from the mix, replayed in order by wrk
    heavy_share: float = 0.1  # web-mixed: share of the connections that replay heavy pages
    connect_threads: tuple[int, ...] = (1, 4)  # connect: caller threads
    conn_duration: float = 1.0  # connect, fresh: seconds per timed run (fsync-bound: noisy)
    procs: int = 4  # procs: writer processes
    procs_threads: int = 8  # procs: writer threads per process
    procs_duration: float = 2.0  # procs: seconds per timed run
    procs_rows: int = 10_000  # procs: rows in the table before the run (point reads hit them)
    gunicorn_processes: int = 2  # gunicorn: -w
    gunicorn_threads: int = 8  # gunicorn: --threads (-k gthread)
    write_share: float = 0.1  # gunicorn write mix: share of requests that POST a review


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def get_mode(name: str) -> Mode:
    """The named mode, with worker counts fitted to this machine."""
    n = cores()
    if name == "full":
        return Mode(
            "full", rows=1_000_000, scan_rows=50_000, udf_rows=200_000, threads=(1, 4, 16),
            workers=tuple(range(1, n + 1)), reps=5, duration=2.0, warmup=0.5,
            orm_authors=10_000, orm_books=100_000, web_duration=8.0, web_books=20_000,
            startup_reps=7, wrk_paths=20_000, procs_duration=5.0, conn_duration=3.0,
        )
    if name == "quick":
        return Mode(
            "quick", rows=100_000, scan_rows=50_000, udf_rows=20_000, threads=(1, 4),
            workers=(n,), reps=3, duration=0.3, warmup=0.1, web_duration=1.5,
        )
    if name == "smoke":
        return Mode(
            "smoke", rows=3_000, scan_rows=1_000, udf_rows=1_000, threads=(1, 4),
            workers=(2,), reps=1, duration=0.1, warmup=0.0, orm_authors=50, orm_books=300,
            web_clients=4, web_duration=0.5, web_books=200, startup_reps=1, write_threads=4,
            orm_threads=4, wrk_threads=1, wrk_paths=500, procs=2, procs_threads=2,
            procs_duration=0.3, procs_rows=200, conn_duration=0.1,
        )
    raise ValueError(f"unknown mode {name!r}")


def with_overrides(mode: Mode, **changes: object) -> Mode:
    """A copy of ``mode`` with the given fields replaced (command-line overrides)."""
    return replace(mode, **{k: v for k, v in changes.items() if v is not None})

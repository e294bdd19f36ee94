"""Resource figures: start-up times, first-worker latency, worker memory, idle worker CPU.

Start-up is measured both for a bare DB-API connection (connect to the first answer) and for a
SQLAlchemy engine (``create_engine`` to the first answer), each with a fresh pool.

mpsqlite starts no worker process until a read proves GIL-heavy (it returned at least
``HEAVY_ROWS`` rows through fetchall/fetchmany), and such a read runs on a worker only from its
next execution on. So the figures report how many workers ran after cheap point reads alone
(``workers_after_point_reads``: none is expected), then force workers: a heavy read is run once
to be judged, then started on ``STARTUP_WORKERS`` connections at once, each keeping its
unfinished result (and so its worker) until all have started. Worker memory and CPU are those
workers'. The first-worker latency is ``execute`` to the first row of the first statement a
fresh pool (no worker started) sends to a worker, which starts for it (:func:`_first_worker_ms`).
Worker pids come from ``mpsqlite.pool_status()``; memory is ``VmRSS`` from
``/proc/<pid>/status`` and CPU is ``utime + stime`` from ``/proc/<pid>/stat`` (Linux only).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from . import data, sides
from .runner import Context, log, run_threads

STARTUP_WORKERS = 2
#: Rows a read must return to be judged heavy (mpsqlite._offload.HEAVY_ROWS).
HEAVY_ROWS = 1000
#: Rows of the read that forces workers: above what a worker sends in its first reply
#: (1024 rows), so that an unfinished result keeps its worker leased.
FORCE_ROWS = 2048
_FORCE_SQL = "select * from t where id <= ?"


def rss_kb(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB, None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time ``pid`` has used so far, None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int | None = None) -> set[int]:
    """Pids of the live child processes of ``pid`` (default this process), from ``/proc``."""
    parent = os.getpid() if pid is None else pid
    out = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == parent:
            out.add(int(entry.name))
    return out


def _startup_ms(side: str, path: Path, reps: int, in_transaction: bool) -> tuple[float, float]:
    """(first, median) milliseconds from connect to the first query's answer.

    ``in_transaction`` sends an explicit BEGIN first; in mpsqlite that takes the writer gate
    (its read still runs in this process, as every cheap read does).
    """
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        conn = sides.connect(side, path, STARTUP_WORKERS)
        if in_transaction:
            conn.execute("begin")
        conn.execute("select count(*) from t where id < 10").fetchone()
        times.append((time.perf_counter() - t0) * 1000)
        conn.rollback()
        conn.close()
        sides.shutdown_mp()
    return times[0], statistics.median(times)


def _engine_startup_ms(side: str, path: Path) -> float:
    """``create_engine`` to the first answered query, through SQLAlchemy (a fresh pool)."""
    from sqlalchemy import create_engine, text

    t0 = time.perf_counter()
    engine = create_engine(sides.sqlalchemy_url(side, path, STARTUP_WORKERS))
    with engine.connect() as conn:
        conn.execute(text("select count(*) from t where id < 10")).scalar()
    elapsed = (time.perf_counter() - t0) * 1000
    engine.dispose()
    sides.shutdown_mp()
    return elapsed


def _offloaded() -> int:
    import mpsqlite

    return sum(p["offloaded_statements"] for p in mpsqlite.pool_status())


def _first_worker_ms(path: Path, reps: int) -> dict[str, Any]:
    """Execute to first row of the first statement a fresh pool sends to a worker.

    Each repetition starts with no worker (``shutdown``), runs the heavy read until one
    execution is offloaded (the first is judged in this process, the next goes to a worker,
    which starts for it) and times that execution up to its first row, then a second
    offloaded execution on the now warm worker."""
    first: list[float] = []
    warm: list[float] = []
    n = FORCE_ROWS
    for _ in range(reps):
        sides.shutdown_mp()
        conn = sides.connect(sides.MP, path, STARTUP_WORKERS)
        try:
            times: list[float] = []
            for _attempt in range(4):
                before = _offloaded()
                t0 = time.perf_counter()
                cur = conn.execute(_FORCE_SQL, (n,))
                cur.fetchone()
                elapsed = (time.perf_counter() - t0) * 1000
                if len(cur.fetchall()) != n - 1:
                    raise RuntimeError("a heavy read returned the wrong number of rows")
                cur.close()
                if _offloaded() > before:
                    times.append(elapsed)
                    if len(times) == 2:
                        break
            if times:
                first.append(times[0])
            if len(times) > 1:
                warm.append(times[1])
        finally:
            conn.close()
            sides.shutdown_mp()
    out: dict[str, Any] = {"first_worker_reps": reps, "first_worker_offloaded_reps": len(first)}
    if first:
        out["first_worker_ms_median"] = statistics.median(first)
        out["first_worker_ms_max"] = max(first)
        out["first_worker_ms_each"] = [round(x, 2) for x in first]
    else:
        out["first_worker_note"] = "no execution went to a worker: nothing to time"
    if warm:
        out["warm_worker_ms_median"] = statistics.median(warm)
    return out


def _worker_pids() -> list[int]:
    import mpsqlite

    return [w["pid"] for pool in mpsqlite.pool_status() for w in pool["workers"]]


def _force_workers(conns: list[Any], rows: int) -> int:
    """Start ``min(len(conns), STARTUP_WORKERS)`` workers with a heavy read; return how
    many reads went to a worker (``offloaded_statements`` grew by that much)."""
    import mpsqlite

    def offloaded() -> int:
        return sum(p["offloaded_statements"] for p in mpsqlite.pool_status())

    n = min(rows, FORCE_ROWS)
    if len(conns[0].execute(_FORCE_SQL, (n,)).fetchall()) < HEAVY_ROWS:
        return 0  # the table is too small for a read mpsqlite would offload
    before = offloaded()
    cursors = []
    for conn in conns[:STARTUP_WORKERS]:
        cur = conn.execute(_FORCE_SQL, (n,))
        cur.fetchone()  # the rest stays in the worker, which stays leased
        cursors.append(cur)
    for cur in cursors:
        if len(cur.fetchall()) != n - 1:
            raise RuntimeError("a heavy read returned the wrong number of rows")
    return offloaded() - before


def run(ctx: Context) -> dict[str, Any]:
    """Start-up (both sides) and, for mpsqlite, worker memory and idle CPU."""
    m = ctx.mode
    src = data.table_t(ctx.data_dir, m.rows)
    out: dict[str, Any] = {"startup_workers": STARTUP_WORKERS}
    for side in ctx.sides:
        path = data.copy_for(src, ctx.work_dir, f"resources_{side}.db")
        first, median = _startup_ms(side, path, m.startup_reps, in_transaction=False)
        out[f"startup_ms_{side}_first"] = first
        out[f"startup_ms_{side}_median"] = median
        first, median = _startup_ms(side, path, m.startup_reps, in_transaction=True)
        out[f"startup_in_txn_ms_{side}_first"] = first
        out[f"startup_in_txn_ms_{side}_median"] = median
        out[f"engine_startup_ms_{side}"] = _engine_startup_ms(side, path)
    out["bench_rss_mib"] = (rss_kb(os.getpid()) or 0) / 1024
    if sides.MP not in ctx.sides:
        return out
    path = data.copy_for(src, ctx.work_dir, "resources_first_worker.db")
    out.update(_first_worker_ms(path, m.startup_reps))
    path = data.copy_for(src, ctx.work_dir, "resources_load.db")
    threads = max(m.threads)
    conns = [sides.connect(sides.MP, path, STARTUP_WORKERS) for _ in range(threads)]
    try:
        # Cheap point reads from every thread: they all run in this process.
        run_threads(lambda i: _point_op(conns[i]), threads, 0.2)
        out["workers_after_point_reads"] = len(_worker_pids())
        out["heavy_reads_offloaded"] = _force_workers(conns, m.rows)
        time.sleep(0.3)
        pids = _worker_pids()
        if not pids:
            out["workers_note"] = ("no workers: no read was heavy enough to offload, every "
                                   "statement ran in this process")
        idle = [rss_kb(p) or 0 for p in pids]
        cpu0 = [cpu_seconds(p) or 0.0 for p in pids]
        idle_wait = min(1.0, max(m.duration, 0.2))
        time.sleep(idle_wait)
        cpu1 = [cpu_seconds(p) or 0.0 for p in pids]
        out["workers"] = len(pids)
        out["worker_rss_idle_mib_each"] = statistics.median(idle) / 1024 if idle else 0.0
        out["worker_rss_idle_mib_total"] = sum(idle) / 1024
        out["worker_idle_cpu_percent"] = 100 * (sum(cpu1) - sum(cpu0)) / idle_wait
        load_s = max(m.duration, 0.2) * 2
        peak = _peak_rss_under_load(conns, pids, m.scan_rows, threads, load_s)
        out["worker_rss_scan_load_mib_total_peak"] = peak / 1024
        out["bench_rss_mib_with_pool"] = (rss_kb(os.getpid()) or 0) / 1024
    finally:
        for conn in conns:
            conn.close()
        sides.shutdown_mp()
    log(f"  resources: {out}")
    return out


def _point_op(conn: Any) -> Any:
    return lambda: conn.execute("select * from t where id = 1").fetchone()


def _peak_rss_under_load(
    conns: list[Any], pids: list[int], scan_rows: int, threads: int, seconds: float
) -> int:
    """Highest summed worker RSS seen while ``threads`` threads run the scan query."""
    peak = [0]
    stop = threading.Event()

    def _sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], sum(rss_kb(p) or 0 for p in pids))
            stop.wait(0.02)

    sampler = threading.Thread(target=_sample, daemon=True)
    sampler.start()

    def make(i: int) -> Any:
        conn = conns[i]
        return lambda: conn.execute("select * from t where id <= ?", (scan_rows,)).fetchall()

    try:
        run_threads(make, threads, seconds)
    finally:
        stop.set()
        sampler.join()
    return peak[0]

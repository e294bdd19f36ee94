"""DB-API scenarios: point, scan, udf, heavy (reads) and write (durable commits).

Each caller thread uses its own connection, opened the same way on both sides, which is how
threaded code uses ``sqlite3`` today and what a drop-in replacement has to speed up.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

from . import data, sides
from .runner import Arm, Context, log, measure_interleaved, result_rows

PAYLOAD = "x" * 100  # the 100-byte row of the write scenario


def bench_score(a: int) -> int:
    """The per-row Python function of the udf scenario: a little integer hashing."""
    h = (a * 2654435761) & 0xFFFFFFFF
    for _ in range(3):
        h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return h % 1000


def _point(ctx: Context) -> tuple[str, Callable[[Any, int], Callable[[], Any]]]:
    rows = ctx.mode.rows

    def make(conn: Any, i: int) -> Callable[[], Any]:
        rng = random.Random(1000 + i)

        def op() -> None:
            row = conn.execute("select * from t where id = ?", (rng.randint(1, rows),)).fetchone()
            if row is None:
                raise AssertionError("point query found no row")

        return op

    return "point", make


def _scan(ctx: Context) -> tuple[str, Callable[[Any, int], Callable[[], Any]]]:
    n = ctx.mode.scan_rows

    def make(conn: Any, i: int) -> Callable[[], Any]:
        def op() -> None:
            got = conn.execute("select * from t where id <= ?", (n,)).fetchall()
            if len(got) != n:
                raise AssertionError(f"scan fetched {len(got)} rows, expected {n}")

        return op

    return "scan", make


def _udf(ctx: Context) -> tuple[str, Callable[[Any, int], Callable[[], Any]]]:
    n = ctx.mode.udf_rows

    def make(conn: Any, i: int) -> Callable[[], Any]:
        def op() -> None:
            (total,) = conn.execute(
                "select sum(bench_score(a)) from t where id <= ?", (n,)
            ).fetchone()
            if total is None:
                raise AssertionError("udf query returned NULL")

        return op

    return "udf", make


def _heavy(ctx: Context) -> tuple[str, Callable[[Any, int], Callable[[], Any]]]:
    rows = ctx.mode.rows
    sql = "select count(*), sum(a % 7), avg(c * 2.5 + a), sum(b like 'ab%') from t"

    def make(conn: Any, i: int) -> Callable[[], Any]:
        def op() -> None:
            (count, *_rest) = conn.execute(sql).fetchone()
            if count != rows:
                raise AssertionError(f"heavy counted {count} rows, expected {rows}")

        return op

    return "heavy", make


READ_SCENARIOS = {"point": _point, "scan": _scan, "udf": _udf, "heavy": _heavy}


def run_read(ctx: Context, name: str) -> list[dict[str, Any]]:
    """One read scenario: every thread count, plain and mp arms interleaved."""
    _, make = READ_SCENARIOS[name](ctx)
    src = data.table_t(ctx.data_dir, ctx.mode.rows)
    max_threads = max(ctx.mode.threads)
    pools: dict[str, list[Any]] = {}
    arms_all: list[tuple[str, int | None]] = ctx.arm_specs()
    try:
        for side, workers in arms_all:
            path = data.copy_for(src, ctx.work_dir, f"{name}_{side}_{workers}.db")
            conns = [sides.connect(side, path, workers) for _ in range(max_threads)]
            if name == "udf":
                for conn in conns:
                    conn.create_function("bench_score", 1, bench_score)
            pools[_key(side, workers)] = conns
        rows: list[dict[str, Any]] = []
        for threads in ctx.mode.threads:
            arms = [
                Arm(side, workers, _factory(make, pools[_key(side, workers)]))
                for side, workers in arms_all
            ]
            samples = measure_interleaved(
                arms, threads, ctx.mode.duration, ctx.mode.warmup, ctx.mode.reps,
                f"{name} threads={threads}",
            )
            rows += result_rows(name, threads, arms, samples, unit="queries/s")
        return rows
    finally:
        for conns in pools.values():
            for conn in conns:
                conn.close()
        sides.shutdown_mp()


def run_write(ctx: Context) -> list[dict[str, Any]]:
    """Concurrent durable writers: insert + commit each, WAL, ``synchronous=FULL``."""
    threads = ctx.mode.write_threads
    arms: list[Arm] = []
    conns_all: list[Any] = []
    counters: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    synchronous: dict[str, Any] = {}
    arm_conns: dict[str, list[Any]] = {}
    try:
        for side, workers in ctx.arm_specs():
            path = ctx.work_dir / f"write_{side}_{workers}.db"
            data._remove_db(path)
            setup = sides.connect(side, path, workers)
            setup.execute("pragma journal_mode=wal")
            setup.execute("create table w (id integer primary key, thread int, payload text)")
            setup.commit()
            setup.close()
            conns = [sides.connect(side, path, workers) for _ in range(threads)]
            for conn in conns:
                conn.execute("pragma synchronous=full")
            conns_all += conns
            counter = itertools.count()
            arm = Arm(side, workers, _writer_factory(conns, counter))
            counters[arm.label], paths[arm.label] = counter, path
            arm_conns[arm.label] = conns
            synchronous[arm.label] = conns[0].execute("pragma synchronous").fetchone()[0]
            arms.append(arm)
        samples = measure_interleaved(
            arms, threads, ctx.mode.duration, ctx.mode.warmup, ctx.mode.reps,
            f"write writers={threads}",
        )
        lost, mp_pool = {}, {}
        for arm in arms:
            if arm.side == sides.MP:
                st = arm_conns[arm.label][0].pool_status()
                mp_pool[arm.label] = {k: st.get(k) for k in ("commits", "fsyncs", "errors")}
            committed = next(counters[arm.label])
            check = sides.connect("plain", paths[arm.label])
            (stored,) = check.execute("select count(*) from w").fetchone()
            check.close()
            lost[arm.label] = committed - stored
            if committed != stored:
                log(f"  write {arm.label}: {committed} commits reported, {stored} rows stored!")
        rows = result_rows(
            "write", threads, arms, samples, zero_errors=("mp",), unit="commits/s",
            synchronous=synchronous, lost_commits=lost, mp_pool=mp_pool,
        )
        return rows
    finally:
        for conn in conns_all:
            conn.close()
        sides.shutdown_mp()


def _writer_factory(conns: list[Any], counter: Any) -> Callable[[int], Callable[[], Any]]:
    def make(i: int) -> Callable[[], Any]:
        conn = conns[i]

        def op() -> None:
            try:
                conn.execute("insert into w (thread, payload) values (?, ?)", (i, PAYLOAD))
                conn.commit()
            except Exception:
                conn.rollback()
                raise
            next(counter)

        return op

    return make


def _factory(
    make: Callable[[Any, int], Callable[[], Any]], conns: list[Any]
) -> Callable[[int], Callable[[], Any]]:
    return lambda i: make(conns[i], i)


def _key(side: str, workers: int | None) -> str:
    return f"{side}:{workers}"

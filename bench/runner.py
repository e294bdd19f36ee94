"""Timing machinery: run one operation from N threads for a fixed time, interleave the arms.

Every measurement is "N threads repeat one operation until a deadline"; throughput is
operations completed divided by the time until the last thread finished its last operation,
so work started before the deadline is neither lost nor free. Arms (plain, mpsqlite with
w workers, ...) are measured in a fixed interleaved order per repetition after a warm-up,
and the median over repetitions is reported.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Op = Callable[[], Any]
OpFactory = Callable[[int], Op]


@dataclass
class Sample:
    """What one timed run of N threads produced."""

    ops: int
    elapsed: float
    errors: int
    latencies_ns: list[int] = field(repr=False, default_factory=list)
    error_kinds: Counter = field(default_factory=Counter)
    #: Percentiles (ms by q) from an external load generator that keeps no per-request list.
    percentiles: dict[float, float] | None = None
    #: Named sub-samples of a run made of several concurrent loads (e.g. ordinary and heavy).
    parts: dict[str, Sample] = field(repr=False, default_factory=dict)

    @property
    def throughput(self) -> float:
        """Completed operations per second (errors excluded)."""
        return self.ops / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        """The q-th percentile (0..100) of successful operation latencies, in milliseconds."""
        if self.percentiles is not None:
            return self.percentiles.get(q)
        if not self.latencies_ns:
            return None
        data = sorted(self.latencies_ns)
        k = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
        return data[k] / 1e6


@dataclass
class Context:
    """What every scenario gets: the mode, which sides to run, and where files go."""

    mode: Any  # bench.modes.Mode
    sides: tuple[str, ...]
    data_dir: Any  # pathlib.Path: cached datasets
    work_dir: Any  # pathlib.Path: per-run copies, removed afterwards
    build_dir: Any = None  # pathlib.Path: untracked folder for built helpers (the fsync shim)

    def arm_specs(self) -> list[tuple[str, int | None]]:
        """(side, workers) for every arm: plain once, mp once per worker count."""
        specs: list[tuple[str, int | None]] = []
        if "plain" in self.sides:
            specs.append(("plain", None))
        if "mp" in self.sides:
            specs.extend(("mp", w) for w in self.mode.workers)
        return specs


class CannotRun(Exception):
    """A scenario's prerequisite is missing (a tool, a site page): reported, not a failure."""


@dataclass
class Arm:
    """One measured variant of a scenario: a side (plain or mp) with its own operation factory."""

    side: str
    workers: int | None
    make_op: OpFactory
    run: Callable[[OpFactory, int, float], Sample] | None = None  # default: run_threads
    #: Own label, for a scenario with two arms of one side (plain CherryPy, plain gunicorn).
    name: str | None = None

    @property
    def label(self) -> str:
        """Short name used in progress lines and tables."""
        if self.name:
            return self.name
        return self.side if self.workers is None else f"{self.side} w={self.workers}"


def log(message: str) -> None:
    """Progress display on stderr, so stdout stays clean for the result table."""
    print(message, file=sys.stderr, flush=True)


def run_threads(make_op: OpFactory, threads: int, duration: float) -> Sample:
    """Run ``make_op(i)()`` repeatedly in ``threads`` threads for ``duration`` seconds."""
    ops = [0] * threads
    errs = [0] * threads
    lats: list[list[int]] = [[] for _ in range(threads)]
    kinds: list[Counter] = [Counter() for _ in range(threads)]
    go = threading.Event()
    deadline = [0.0]
    op_funcs = [make_op(i) for i in range(threads)]

    def _loop(i: int) -> None:
        op, lat, kind = op_funcs[i], lats[i], kinds[i]
        clock = time.perf_counter_ns
        go.wait()
        end_ns = int(deadline[0] * 1e9)
        n = e = 0
        now = clock()
        while now < end_ns:
            try:
                op()
            except Exception as exc:  # counted and reported, never hidden
                e += 1
                kind[f"{type(exc).__name__}: {exc}"[:120]] += 1
                after = clock()
            else:
                after = clock()
                n += 1
                lat.append(after - now)
            now = after
        ops[i], errs[i] = n, e

    workers = [threading.Thread(target=_loop, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    start = time.perf_counter()
    deadline[0] = time.perf_counter_ns() / 1e9 + duration
    go.set()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - start
    total_kinds: Counter = Counter()
    for k in kinds:
        total_kinds.update(k)
    merged = [x for lat in lats for x in lat]
    return Sample(sum(ops), elapsed, sum(errs), merged, total_kinds)


def measure_interleaved(
    arms: Sequence[Arm],
    threads: int,
    duration: float,
    warmup: float,
    reps: int,
    title: str,
) -> dict[str, list[Sample]]:
    """Warm each arm up, then run ``reps`` rounds of all arms in order (plain, mp, plain, mp...)."""
    for arm in arms:
        if warmup > 0:
            (arm.run or run_threads)(arm.make_op, threads, warmup)
    out: dict[str, list[Sample]] = {arm.label: [] for arm in arms}
    for rep in range(reps):
        parts = []
        for arm in arms:
            sample = (arm.run or run_threads)(arm.make_op, threads, duration)
            out[arm.label].append(sample)
            parts.append(f"{arm.label} {fmt_num(sample.throughput)}/s")
        log(f"  {title} rep {rep + 1}/{reps}: " + ", ".join(parts))
    return out


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Medians over repetitions of throughput and latency percentiles, plus error totals."""
    p50s = [s.percentile_ms(50) for s in samples]
    p99s = [s.percentile_ms(99) for s in samples]
    kinds: Counter = Counter()
    for s in samples:
        kinds.update(s.error_kinds)
    return {
        "throughput": statistics.median(s.throughput for s in samples),
        "throughputs": [round(s.throughput, 3) for s in samples],
        "p50_ms": _median_or_none(p50s),
        "p99_ms": _median_or_none(p99s),
        "ops": sum(s.ops for s in samples),
        "errors": sum(s.errors for s in samples),
        "error_kinds": dict(kinds.most_common(5)),
    }


def ratio(mp: float | None, plain: float | None) -> float | None:
    """mp / plain, or None where either side has no number."""
    if mp is None or plain is None or plain == 0:
        return None
    return mp / plain


def paired_ratios(plain: Sequence[Sample], mp: Sequence[Sample]) -> dict[str, Any]:
    """Throughput ratio mp / plain per repetition (arms interleave, so rep i pairs with rep i).

    ``ratio`` is their median, ``ratio_min``/``ratio_max`` the spread over repetitions.
    """
    each = [r for p, m in zip(plain, mp) if (r := ratio(m.throughput, p.throughput)) is not None]
    if not each:
        return {"ratio": None, "ratios": [], "ratio_min": None, "ratio_max": None}
    return {"ratio": statistics.median(each), "ratios": [round(r, 4) for r in each],
            "ratio_min": min(each), "ratio_max": max(each)}


def fmt_num(x: float | None) -> str:
    """Compact human formatting for throughputs and latencies."""
    if x is None:
        return "-"
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def _median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def result_rows(
    scenario: str,
    threads: int,
    arms: Sequence[Arm],
    samples: dict[str, list[Sample]],
    zero_errors: Sequence[str] = ("plain", "mp"),
    **extra: Any,
) -> list[dict[str, Any]]:
    """One result row per mp arm (compared with the plain arm), or a plain-only row.

    ``zero_errors`` names the sides on which any error is a problem (the exit status says so).
    """
    plain = next((a for a in arms if a.side == "plain"), None)
    plain_sum = summarize(samples[plain.label]) if plain else None
    mp_arms = [a for a in arms if a.side != "plain"] or [None]
    rows = []
    for arm in mp_arms:
        mp_sum = summarize(samples[arm.label]) if arm else None
        row: dict[str, Any] = {
            "scenario": scenario,
            "threads": threads,
            "workers": arm.workers if arm else None,
            "plain": plain_sum,
            "mp": mp_sum,
            "ratio": None,
            "ratio_p50": None,
            "ratio_p99": None,
            "zero_errors_expected": list(zero_errors),
        }
        if plain_sum and mp_sum:
            row.update(paired_ratios(samples[plain.label], samples[arm.label]))
            row["ratio_p50"] = ratio(mp_sum["p50_ms"], plain_sum["p50_ms"])
            row["ratio_p99"] = ratio(mp_sum["p99_ms"], plain_sum["p99_ms"])
        row.update(extra)
        rows.append(row)
    return rows

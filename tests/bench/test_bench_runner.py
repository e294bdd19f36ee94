"""Unit tests of the benchmark's own machinery: counting, statistics, datasets, reporting.

These check the harness arithmetic the published numbers rest on; they assert no timings.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # ``bench`` lives at the repository root, not in src/
    sys.path.insert(0, str(ROOT))

from bench import data, report  # noqa: E402
from bench.runner import Arm, Sample, measure_interleaved, ratio, run_threads, summarize  # noqa: E402


def test_run_threads_counts_every_operation_and_error() -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def make(i: int):
        def op() -> None:
            with lock:
                calls.append(i)
                n = len(calls)
            if n % 5 == 0:
                raise ValueError("every fifth call fails")

        return op

    # Long enough that each thread is scheduled before the deadline even on a
    # loaded machine (a thread that wakes after it rightly runs nothing).
    sample = run_threads(make, 3, 0.3)
    assert sample.ops + sample.errors == len(calls) > 0
    assert sample.errors == len(calls) // 5
    assert sample.error_kinds == {"ValueError: every fifth call fails": sample.errors}
    assert len(sample.latencies_ns) == sample.ops
    assert set(calls) == {0, 1, 2}  # every thread ran


def test_measure_interleaved_runs_arms_in_order_per_repetition() -> None:
    order: list[str] = []

    def arm(name: str) -> Arm:
        def runner(make_op, threads, duration) -> Sample:
            order.append(name)
            return Sample(ops=10, elapsed=1.0, errors=0, latencies_ns=[1_000_000] * 10)

        return Arm(name, None if name == "plain" else 2, lambda i: (lambda: None), run=runner)

    out = measure_interleaved([arm("plain"), arm("mp")], 1, 0.1, 0.1, 3, "t")
    assert order == ["plain", "mp"] * 4  # one warm-up round, then three repetitions
    assert [len(v) for v in out.values()] == [3, 3]


def test_summarize_takes_medians_and_sums_errors() -> None:
    samples = [
        Sample(ops=100, elapsed=1.0, errors=1, latencies_ns=[1_000_000] * 99 + [9_000_000]),
        Sample(ops=300, elapsed=1.0, errors=0, latencies_ns=[2_000_000] * 100),
        Sample(ops=200, elapsed=1.0, errors=2, latencies_ns=[3_000_000] * 100),
    ]
    s = summarize(samples)
    assert s["throughput"] == 200
    assert s["errors"] == 3 and s["ops"] == 600
    assert s["p50_ms"] == 2.0
    assert ratio(4.0, 2.0) == 2.0 and ratio(None, 2.0) is None and ratio(1.0, 0) is None


def test_table_t_is_deterministic_and_cached(tmp_path: Path) -> None:
    first = data.table_t(tmp_path / "a", 500)
    second = data.table_t(tmp_path / "b", 500)
    assert data.table_t(tmp_path / "a", 500) == first  # cached, not rebuilt
    rows = [sqlite3.connect(p).execute("select * from t order by id").fetchall()
            for p in (first, second)]
    assert rows[0] == rows[1] and len(rows[0]) == 500
    copy = data.copy_for(first, tmp_path, "copy.db")
    assert sqlite3.connect(copy).execute("select count(*) from t").fetchone() == (500,)


def test_report_outputs(tmp_path: Path) -> None:
    stats = summarize([Sample(ops=10, elapsed=1.0, errors=0, latencies_ns=[5_000] * 10)])
    rows = [{"scenario": "point", "threads": 1, "workers": 2, "plain": stats, "mp": stats,
             "ratio": 1.0, "unit": "queries/s"}]
    text = report.table(rows)
    assert "point" in text and "1.00x" in text
    assert report.write_png(tmp_path / "x.png", rows, "t")
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report.write_json(tmp_path / "x.json", {"results": rows})
    assert (tmp_path / "x.json").read_text().startswith("{")

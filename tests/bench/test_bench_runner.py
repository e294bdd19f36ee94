"""Unit tests of the benchmark's own machinery: counting, statistics, datasets, reporting.

These check the harness arithmetic the published numbers rest on; they assert no timings.
"""

from __future__ import annotations

import importlib
import sqlite3
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # ``bench`` lives at the repository root, not in src/
    sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    data,
    modes,
    report,
    scenarios_conn,
    scenarios_gunicorn,
    scenarios_procs,
    scenarios_wrk,
)
from bench.runner import (  # noqa: E402
    Arm,
    Sample,
    measure_interleaved,
    paired_ratios,
    ratio,
    result_rows,
    run_threads,
    summarize,
)


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


def test_paired_ratios_pair_repetitions_and_give_the_spread() -> None:
    def s(ops: int) -> Sample:
        return Sample(ops=ops, elapsed=1.0, errors=0)

    got = paired_ratios([s(100), s(200), s(400)], [s(50), s(400), s(400)])
    assert got["ratios"] == [0.5, 2.0, 1.0]
    assert (got["ratio"], got["ratio_min"], got["ratio_max"]) == (1.0, 0.5, 2.0)
    assert paired_ratios([s(0)], [s(5)])["ratio"] is None  # nothing to divide by


def test_result_rows_carry_median_ratio_and_spread() -> None:
    arms = [Arm("plain", None, lambda i: None), Arm("mp", 2, lambda i: None)]
    samples = {"plain": [Sample(10, 1.0, 0), Sample(10, 1.0, 0), Sample(20, 1.0, 0)],
               "mp w=2": [Sample(30, 1.0, 0), Sample(10, 1.0, 0), Sample(30, 1.0, 0)]}
    (row,) = result_rows("x", 4, arms, samples, unit="ops/s")
    assert row["ratios"] == [3.0, 1.0, 1.5]
    assert (row["ratio"], row["ratio_min"], row["ratio_max"]) == (1.5, 1.0, 3.0)
    assert "1.50x (1.00-3.00)" in report.table([row])
    assert report._annotation(row).startswith("1.50x (1.00-3.00)")
    assert "30 vs 10 ops/s" in report._annotation(row)


def test_short_numbers() -> None:
    assert [report.short_num(x) for x in (8.571, 950, 12_345, 123_456, 1_234_567, None)] == \
        ["8.57", "950", "12.3k", "123k", "1.23M", "-"]


def test_chart_with_wide_ratios_renders(tmp_path: Path) -> None:
    rows = []
    for n, (ratios, unit) in enumerate((([0.08, 0.1, 0.2], "queries/s"),
                                        ([9.0, 10.8, 12.0], "req/s"))):
        plain = summarize([Sample(100, 1.0, 0, [1_000_000] * 100)])
        mp = summarize([Sample(round(100 * ratios[1]), 1.0, 0, [2_000_000] * 10)])
        rows.append({"scenario": f"s{n}", "threads": 4, "workers": 2, "plain": plain, "mp": mp,
                     "unit": unit, "ratio": ratios[1], "ratios": ratios,
                     "ratio_min": ratios[0], "ratio_max": ratios[2]})
    assert report.write_png(tmp_path / "wide.png", rows, "wide")
    assert (tmp_path / "wide.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "p99 2.0 vs 1.0 ms" in report._annotation(rows[1])  # web rows show latency too
    assert "p99" not in report._annotation(rows[0])


def test_output_paths_default_to_the_untracked_folder(tmp_path: Path) -> None:
    bench_main = importlib.import_module("bench.__main__")
    out = ROOT / "bench" / "out"
    assert bench_main.output_paths("smoke", None, False) == (out / "smoke.json",
                                                               out / "smoke.png")
    assert bench_main.output_paths("quick", tmp_path, False)[0] == tmp_path / "quick.json"
    results = ROOT / "bench" / "results"
    assert bench_main.output_paths("full", None, True)[0] == results / "full.json"
    assert bench_main.output_paths("quick", None, True)[1] == results / "latest.png"
    assert bench_main.main(["--smoke", "--reference"]) == 2  # smoke runs are never reference


def test_wrk_summary_line_is_parsed() -> None:
    line = ('BENCH_JSON {"requests": 120, "duration_us": 2000000, "connect": 0, "read": 1, '
            '"write": 0, "status": 20, "timeout": 2, '
            '"latency_us": {"50": 1500, "90": 4000, "99": 9000, "99.9": 12000}, '
            '"max_us": 15000}')
    s = scenarios_wrk.parse(line)
    assert (s.ops, s.elapsed, s.errors) == (100, 2.0, 23)  # status >= 400 is not a success
    assert s.throughput == 50.0
    assert s.percentile_ms(50) == 1.5 and s.percentile_ms(99) == 9.0
    assert s.error_kinds == {"HTTP status >= 400": 20, "socket read error": 1,
                             "socket timeout error": 2}
    assert summarize([s])["p99_ms"] == 9.0


def test_wrk_paths_are_the_same_for_the_same_seed(tmp_path: Path) -> None:
    import example_site.loadmix as loadmix

    mix = loadmix.load_mix(200)
    a = scenarios_wrk.write_paths(mix, 300, 7, tmp_path / "a").read_text().split()
    b = scenarios_wrk.write_paths(mix, 300, 7, tmp_path / "b").read_text().split()
    c = scenarios_wrk.write_paths(mix, 300, 8, tmp_path / "c").read_text().split()
    assert a == b != c and len(a) == 300 and all(p.startswith("/") for p in a)
    assert scenarios_wrk.seconds_of(0.5) == 1 and scenarios_wrk.seconds_of(8.0) == 8


def test_full_mode_repeats_every_scenario_at_least_five_times() -> None:
    assert modes.get_mode("full").reps >= 5


def test_procs_fairness_is_worst_thread_against_the_median() -> None:
    assert scenarios_procs.fairness([10, 10, 10]) == (1.0, 0)
    assert scenarios_procs.fairness([40, 20, 20, 5]) == (4.0, 0)  # median 20, worst 5
    assert scenarios_procs.fairness([30, 20, 0]) == (None, 1)  # a starved thread: undefined
    assert scenarios_procs.fairness([]) == (None, 0)


def test_procs_figures_pair_the_slowest_attempts() -> None:
    def s(commits: list[int], slowest_ms: float) -> scenarios_procs.ProcsSample:
        return scenarios_procs.ProcsSample(sum(commits), 1.0, 0, [1_000_000, int(slowest_ms * 1e6)],
                                           thread_commits=commits)

    arms = [Arm("plain", None, lambda i: None), Arm("mp", None, lambda i: None)]
    samples = {"plain": [s([10, 10], 100.0), s([10, 2], 400.0), s([10, 10], 50.0)],
               "mp": [s([20, 20], 10.0), s([20, 20], 20.0), s([20, 20], 10.0)]}
    (row,) = result_rows("procs", 2, arms, samples)
    scenarios_procs.add_procs_figures(row, arms, samples)
    assert row["plain"]["slowest_ms"] == 400.0 and row["mp"]["slowest_ms"] == 20.0
    assert row["plain"]["fairness_each"] == [1.0, 3.0, 1.0]  # median of (10, 2) is 6
    assert row["plain"]["fairness_worst"] == 3.0 and row["mp"]["fairness"] == 1.0
    assert row["ratio_slowest"] == 0.1  # 10/100, 20/400, 10/50
    assert (row["ratio_slowest_min"], row["ratio_slowest_max"]) == (0.05, 0.2)
    assert "slowest 0.10x (0.05-0.20)" in report.details_table([row])


def test_fresh_cost_ratio_is_the_inverse_of_the_throughput_ratio() -> None:
    plain = summarize([Sample(200, 1.0, 0)])
    mp = summarize([Sample(100, 1.0, 0)])
    row = {"scenario": "fresh", "threads": 1, "plain": plain, "mp": mp, "ratio": 0.5,
           "ratio_min": 0.4, "ratio_max": 0.8, "processes_started": {"plain": 0, "mp": 0}}
    scenarios_conn._add_costs(row)
    assert (plain["ms_per_file"], mp["ms_per_file"]) == (5.0, 10.0)
    assert (row["cost_ratio"], row["cost_ratio_min"], row["cost_ratio_max"]) == (2.0, 1.25, 2.5)
    assert "cost 2.00x (1.25-2.50)" in report.details_table([row])


def test_write_mix_lines_post_json_reviews(tmp_path: Path) -> None:
    import json

    path, share = scenarios_gunicorn.write_request_lines(200, 2000, 3, 0.1, tmp_path / "w")
    lines = path.read_text().splitlines()
    posts = [x for x in lines if x.startswith("POST ")]
    assert len(lines) == 2000 and share == len(posts) / 2000 and 0.05 < share < 0.15
    for line in posts:
        _, target, body = line.split(" ", 2)
        assert target.startswith("/api/books/") and target.endswith("/reviews")
        assert set(json.loads(body)) == {"reviewer", "rating", "body"}
    assert all(x.startswith("/") and " " not in x for x in lines if x not in posts)
    again, _ = scenarios_gunicorn.write_request_lines(200, 2000, 3, 0.1, tmp_path / "v")
    assert again.read_text() == path.read_text()  # same seed, same requests


def test_arm_label_and_procs_layout_option() -> None:
    assert Arm("plain", None, lambda i: None, name="plain gunicorn").label == "plain gunicorn"
    assert Arm("mp", 2, lambda i: None).label == "mp w=2"
    bench_main = importlib.import_module("bench.__main__")
    args = bench_main._parse(["--procs", "3x5"])
    assert args.procs == (3, 5)
    mode = modes.with_overrides(modes.get_mode("quick"), procs=args.procs[0],
                                procs_threads=args.procs[1])
    assert (mode.procs, mode.procs_threads) == (3, 5)
    assert modes.get_mode("full").procs * modes.get_mode("full").procs_threads == 32

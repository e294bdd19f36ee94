"""Smoke test of the benchmark harness: every scenario runs once at tiny size, on both sides.

It runs ``python -m bench --smoke`` as a user would (a real subprocess with real SQLite files,
worker processes, web servers on 127.0.0.1, wrk and the fsync shim where installed) with the
default output folder, and checks that each scenario produced numbers for plain and mpsqlite,
no errors where none are expected, and no new file in the checkout. A scenario whose tool is
missing (wrk, gcc) must say so instead of running; which of the two happened is decided by
what this machine has, so the test is the same everywhere. It asserts no timings.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # ``bench`` lives at the repository root, not in src/
    sys.path.insert(0, str(ROOT))

COMPARED = ("point", "scan", "udf", "heavy", "write", "slowdisk", "orm", "web", "web-wrk")
REPORT = ROOT / "bench" / "out" / "smoke.json"
HAS_WRK = shutil.which("wrk") is not None
HAS_GCC = (shutil.which("gcc") or shutil.which("cc")) is not None
HAS_GUNICORN = importlib.util.find_spec("gunicorn") is not None


def _git_status() -> set[str] | None:
    """Porcelain lines for bench/ and tests/bench/, None outside a git work tree."""
    try:
        proc = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", "bench",
             "tests/bench"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(proc.stdout.splitlines()) if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def smoke_run() -> dict[str, Any]:
    """Run the whole smoke benchmark once with default paths; its report and the git status."""
    before = _git_status()
    REPORT.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=200,
    )
    after = _git_status()
    assert REPORT.exists(), f"no report; rc={proc.returncode}\n{proc.stderr[-4000:]}"
    report = json.loads(REPORT.read_text())
    return {"proc": proc, "report": report, "before": before, "after": after}


def _rows(run: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    return [r for r in run["report"]["results"] if r["scenario"] == scenario]


def _check_compared(row: dict[str, Any], latency: bool = True) -> None:
    assert row["workers"] and row["workers"] >= 1
    assert "mp" in row["zero_errors_expected"]
    for side in ("plain", "mp"):
        stats = row[side]
        assert stats["ops"] > 0, f"{row['scenario']} {side}: no operation completed"
        assert stats["throughput"] > 0
        if latency:
            assert stats["p50_ms"] is not None and stats["p99_ms"] >= stats["p50_ms"]
        if side in row["zero_errors_expected"]:
            assert stats["errors"] == 0, f"{row['scenario']} {side}: {stats['error_kinds']}"
    assert row["ratio"] is not None and row["ratio"] > 0
    assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    assert len(row["ratios"]) == len(row["plain"]["throughputs"])


def test_run_succeeds_and_writes_outputs(smoke_run: dict[str, Any]) -> None:
    proc, report = smoke_run["proc"], smoke_run["report"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report["failures"] == {}
    assert report["meta"]["mode"] == "smoke"
    assert set(report["meta"]["sides"]) == {"plain", "mp"}
    assert (REPORT.parent / "smoke.png").stat().st_size > 0
    assert "| scenario" in proc.stdout  # the terminal table
    assert any(p.suffix == ".db" for p in (ROOT / "bench" / ".data").iterdir())  # cached data


def test_run_leaves_the_checkout_clean(smoke_run: dict[str, Any]) -> None:
    if smoke_run["before"] is None:
        pytest.skip("git is missing or this is not a git work tree: nothing to compare")
    new = smoke_run["after"] - smoke_run["before"]
    assert not new, f"the benchmark left files git sees: {sorted(new)}"


@pytest.mark.parametrize("scenario", COMPARED)
def test_scenario_has_numbers_for_both_sides(smoke_run: dict[str, Any], scenario: str) -> None:
    skipped = smoke_run["report"]["skipped"]
    if scenario == "web-wrk" and not HAS_WRK or scenario == "slowdisk" and not HAS_GCC:
        tool = "wrk" if scenario == "web-wrk" else "gcc"
        assert tool in skipped.get(scenario, ""), skipped  # says why it did not run
        assert f"NOT RUN: {scenario}" in smoke_run["proc"].stdout
        return
    assert scenario not in skipped, skipped[scenario]
    rows = _rows(smoke_run, scenario)
    assert rows, f"{scenario} produced no result rows"
    for row in rows:
        _check_compared(row)


def test_mp_side_never_errors_in_writes(smoke_run: dict[str, Any]) -> None:
    (row,) = _rows(smoke_run, "write")
    assert row["mp"]["errors"] == 0, row["mp"]["error_kinds"]  # writers queue, never "locked"
    assert all(v == 0 for v in row["lost_commits"].values()), row["lost_commits"]
    assert row["synchronous"]["plain"] == 2  # the harness really runs plain at FULL
    assert row["mp_pool"], "mp pool commit/fsync counters missing"


def test_slowdisk_runs_both_sides_under_the_shim(smoke_run: dict[str, Any]) -> None:
    if not HAS_GCC:
        assert "gcc" in smoke_run["report"]["skipped"]["slowdisk"]
        return
    (row,) = _rows(smoke_run, "slowdisk")
    assert all(v == 0 for v in row["lost_commits"].values()), row["lost_commits"]
    assert row["synchronous"]["plain"] == 2
    for label, calls in row["fsyncs"].items():
        assert calls > 0, f"{label}: the shim saw no fsync"
    # plain sqlite3 at FULL syncs the WAL at every commit, so the shim was really in its way
    assert row["commits_per_fsync"]["plain"] <= 1, row["commits_per_fsync"]


def test_web_mixed_reports_each_part(smoke_run: dict[str, Any]) -> None:
    if not HAS_WRK:
        assert "apt-get install wrk" in smoke_run["report"]["skipped"]["web-mixed"]
        return
    assert "web-mixed" not in smoke_run["report"]["skipped"]
    rows = {r["scenario"]: r for r in smoke_run["report"]["results"]
            if r["scenario"].startswith("web-mixed")}
    assert set(rows) == {"web-mixed", "web-mixed/ordinary", "web-mixed/heavy"}
    _check_compared(rows["web-mixed"], latency=False)
    _check_compared(rows["web-mixed/ordinary"])
    _check_compared(rows["web-mixed/heavy"])
    total, ordinary, heavy = (rows[k]["plain"]["ops"] for k in
                              ("web-mixed", "web-mixed/ordinary", "web-mixed/heavy"))
    assert total == ordinary + heavy
    conns = rows["web-mixed"]["connections"]
    assert conns["heavy"] >= 1 and conns["ordinary"] > conns["heavy"]


def test_resources_reported(smoke_run: dict[str, Any]) -> None:
    res = smoke_run["report"]["resources"]
    for side in ("plain", "mp"):
        assert res[f"startup_ms_{side}_first"] > 0
        assert res[f"startup_ms_{side}_median"] > 0
        assert res[f"engine_startup_ms_{side}"] > 0
        assert res[f"startup_in_txn_ms_{side}_median"] > 0
    # cheap point reads start no worker; a heavy read started on startup_workers
    # connections at once runs on that many workers, one each
    assert res["workers_after_point_reads"] == 0
    assert res["heavy_reads_offloaded"] == res["startup_workers"]
    assert res["workers"] == res["startup_workers"]
    assert "workers_note" not in res
    assert res["worker_rss_idle_mib_each"] > 0
    assert res["worker_rss_scan_load_mib_total_peak"] > 0
    assert res["worker_idle_cpu_percent"] >= 0


@pytest.mark.parametrize("scenario", ("connect", "fresh", "procs"))
def test_default_arm_scenarios_have_numbers_for_both_sides(smoke_run: dict[str, Any],
                                                           scenario: str) -> None:
    rows = _rows(smoke_run, scenario)
    assert rows, f"{scenario} produced no result rows"
    for row in rows:
        assert row["workers"] is None  # mpsqlite with its defaults
        for side in ("plain", "mp"):
            assert row[side]["ops"] > 0, f"{scenario} {side}: no operation completed"
        assert row["mp"]["errors"] == 0, row["mp"]["error_kinds"]
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    if scenario == "connect":
        assert [r["threads"] for r in rows] == [1, 4]
        assert rows[0]["lost_commits"] == 0
    if scenario == "fresh":
        (row,) = rows
        assert row["plain"]["ms_per_file"] > 0 and row["mp"]["ms_per_file"] > 0
        assert row["cost_ratio"] > 0 and set(row["processes_started"]) == {"plain", "mp"}
    if scenario == "procs":
        (row,) = rows
        assert row["threads"] == row["processes"] * row["threads_per_process"]
        assert row["lost_commits"] == {"plain": 0, "mp": 0}
        assert row["settings"]["plain"] == {"synchronous": 2, "journal_mode": "wal"}
        for side in ("plain", "mp"):
            assert row[side]["slowest_ms"] >= row[side]["p99_ms"]
            assert len(row[side]["fairness_each"]) == len(row[side]["throughputs"])
        assert row["ratio_slowest"] > 0


def test_gunicorn_rows_compare_with_both_baselines(smoke_run: dict[str, Any]) -> None:
    skipped = smoke_run["report"]["skipped"]
    if not (HAS_WRK and HAS_GUNICORN):
        assert "gunicorn" in skipped and "install" in skipped["gunicorn"], skipped
        return
    assert "gunicorn" not in skipped, skipped["gunicorn"]
    rows = {r["scenario"]: r for r in smoke_run["report"]["results"]
            if r["scenario"].startswith("gunicorn")}
    assert set(rows) == {"gunicorn", "gunicorn/vs-cherrypy", "gunicorn-write",
                         "gunicorn-write/vs-cherrypy"}
    for name, row in rows.items():
        _check_compared(row)
        assert row["baseline"] == ("plain cherrypy" if "cherrypy" in name else "plain gunicorn")
    # the mp arm is one and the same in both comparisons
    assert rows["gunicorn"]["mp"] == rows["gunicorn/vs-cherrypy"]["mp"]
    assert 0 < rows["gunicorn-write"]["post_share"] < 0.5


def test_first_worker_latency_reported(smoke_run: dict[str, Any]) -> None:
    res = smoke_run["report"]["resources"]
    assert res["first_worker_offloaded_reps"] == res["first_worker_reps"] >= 1
    assert res["first_worker_ms_median"] > 0

"""Smoke test of the benchmark harness: every scenario runs once at tiny size, on both sides.

It runs ``python -m bench --smoke`` as a user would (a real subprocess with real SQLite files,
worker processes and web servers on 127.0.0.1) and checks that each scenario produced numbers
for plain and mpsqlite and no errors where none are expected. It asserts no timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPARED = ("point", "scan", "udf", "heavy", "write", "orm", "web")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the whole smoke benchmark once and return its JSON report plus the process result."""
    base = tmp_path_factory.mktemp("bench")
    out, data_dir = base / "results", base / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--data-dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=100,
    )
    report_path = out / "latest.json"
    assert report_path.exists(), f"no report; rc={proc.returncode}\n{proc.stderr[-4000:]}"
    report = json.loads(report_path.read_text())
    return {"proc": proc, "report": report, "out": out, "data_dir": data_dir}


def test_run_succeeds_and_writes_outputs(smoke_run: dict[str, Any]) -> None:
    proc, report = smoke_run["proc"], smoke_run["report"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report["failures"] == {}
    assert report["meta"]["mode"] == "smoke"
    assert set(report["meta"]["sides"]) == {"plain", "mp"}
    assert (smoke_run["out"] / "latest.png").stat().st_size > 0
    assert "| scenario" in proc.stdout  # the terminal table
    assert any(p.suffix == ".db" for p in smoke_run["data_dir"].iterdir())  # cached dataset


@pytest.mark.parametrize("scenario", COMPARED)
def test_scenario_has_numbers_for_both_sides(smoke_run: dict[str, Any], scenario: str) -> None:
    rows = [r for r in smoke_run["report"]["results"] if r["scenario"] == scenario]
    assert rows, f"{scenario} produced no result rows"
    for row in rows:
        assert row["workers"] and row["workers"] >= 1
        assert "mp" in row["zero_errors_expected"]
        for side in ("plain", "mp"):
            stats = row[side]
            assert stats["ops"] > 0, f"{scenario} {side}: no operation completed"
            assert stats["throughput"] > 0
            assert stats["p50_ms"] is not None and stats["p99_ms"] >= stats["p50_ms"]
            if side in row["zero_errors_expected"]:
                assert stats["errors"] == 0, f"{scenario} {side}: {stats['error_kinds']}"
        assert row["ratio"] is not None and row["ratio"] > 0


def test_mp_side_never_errors_in_writes(smoke_run: dict[str, Any]) -> None:
    (row,) = [r for r in smoke_run["report"]["results"] if r["scenario"] == "write"]
    assert row["mp"]["errors"] == 0, row["mp"]["error_kinds"]  # writers queue, never "locked"
    assert all(v == 0 for v in row["lost_commits"].values()), row["lost_commits"]
    assert row["synchronous"]["plain"] == 2  # the harness really runs plain at FULL
    assert row["mp_pool"], "mp pool commit/fsync counters missing"


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

"""SQLAlchemy's dialect compliance suite against sqlite+mpsqlite, compared with stock sqlite://.

The suite (tests/dialect/suite) needs SQLAlchemy's pytest plugin, which takes
over a whole pytest session, so each configuration runs in a subprocess with
its own working directory for the database files; results are read from
JUnit XML.  Counts are printed (see them with ``pytest -s``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SUITE_DIR = Path(__file__).parent / "suite"

#: name -> --db option (a [db] entry of setup.cfg)
CONFIGS = {
    "stock sqlite://": "sqlite",
    "mpsqlite file": "mpsqlite",
    "mpsqlite :memory:": "mpsqlite_memory",
}


def _run_suite(db: str, workdir: Path) -> dict[str, tuple[str, str]]:
    """Run the suite for one [db] entry; return test id -> (outcome, skip/failure message)."""
    workdir.mkdir()
    report = workdir / "junit.xml"
    env = dict(os.environ, MPSQLITE_SQLA_SUITE="1")
    command = [
        sys.executable, "-m", "pytest", str(SUITE_DIR), "--db", db, "-q",
        "-p", "no:cacheprovider", "-o", "timeout=120", f"--junitxml={report}",
    ]
    proc = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=1500
    )
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        # class names carry the backend, e.g. ..._sqlite+mpsqlite_3_40_1; drop it
        cls = re.sub(r"_sqlite\+\w+?_[\d_]+$", "", case.get("classname", ""))
        test_id = f"{cls}::{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error"}.get(child.tag, "skipped")
                message = child.get("message", "")
                break
        results[test_id] = (outcome, message)
    return results


@pytest.fixture(scope="module")
def suite_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("sqla_suite")
    results = {}
    for name, db in CONFIGS.items():
        results[name] = _run_suite(db, base / db)
        counts = {o: 0 for o in ("passed", "skipped", "failed", "error")}
        for outcome, _ in results[name].values():
            counts[outcome] += 1
        print(f"\ncompliance suite, {name}: {counts}")
    return results


def _with(results: dict, outcome: str) -> set[str]:
    return {test for test, (o, _) in results.items() if o == outcome}


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_suite_has_no_failures(suite_results: dict, name: str) -> None:
    results = suite_results[name]
    broken = {t: m for t, (o, m) in results.items() if o in ("failed", "error")}
    assert not broken, broken
    assert len(_with(results, "passed")) > 1000  # the suite really ran


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", ["mpsqlite file", "mpsqlite :memory:"])
def test_passes_everything_stock_sqlite_passes(suite_results: dict, name: str) -> None:
    missing = _with(suite_results["stock sqlite://"], "passed") - _with(
        suite_results[name], "passed"
    )
    assert not missing, sorted(missing)


@pytest.mark.timeout(3600)
def test_every_skip_gives_a_reason(suite_results: dict) -> None:
    for name, results in suite_results.items():
        vague = {t for t, (o, m) in results.items() if o == "skipped" and "marked as skip" in m}
        assert not vague, (name, sorted(vague)[:20])

"""pytest plugin: one JSON line per test outcome, in the unittest recorder's format.

Load with ``-p eco_pytest_recorder`` and set ``ECO_RESULTS`` to the output
file.  Each phase report that is not a plain passed setup/teardown is
written; compare.py keeps the worst outcome per id, so a test that passed
its call but failed teardown counts as an error, as pytest itself counts it.
"""

from __future__ import annotations

import json
import os
from typing import Any

_MAX_DETAIL = 6000


def _write(rec: dict[str, Any]) -> None:
    path = os.environ.get("ECO_RESULTS")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")


def _text(report: Any) -> str:
    try:
        text = report.longreprtext or ""
    except Exception:
        text = str(report.longrepr or "")
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL // 3] + "\n[...]\n" + text[-(2 * _MAX_DETAIL) // 3 :]
    return text


def pytest_runtest_logreport(report: Any) -> None:
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if xfail:
            outcome = "xfail" if report.skipped else "xpass"
        else:
            outcome = {"passed": "passed", "failed": "failed", "skipped": "skipped"}[
                report.outcome
            ]
    else:  # setup / teardown
        if report.passed:
            return
        if report.skipped:
            outcome = "xfail" if xfail else "skipped"
        else:
            outcome = "error"
    detail = _text(report) if outcome in ("failed", "error", "skipped") else ""
    if outcome == "skipped" and isinstance(report.longrepr, tuple):
        detail = str(report.longrepr[2])
    _write(
        {
            "id": report.nodeid,
            "outcome": outcome,
            "detail": detail,
            "secs": round(getattr(report, "duration", 0.0), 3),
            "when": report.when,
        }
    )


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _write(
            {
                "id": report.nodeid or "<collection>",
                "outcome": "error",
                "detail": _text(report),
                "secs": None,
                "when": "collect",
            }
        )

"""Command line: ``python -m bench [--quick] [--only point,scan] [--sides plain,mp] [--out DIR]``.

Runs the scenarios in order, prints a table on stdout (progress goes to stderr) and writes
``<out>/latest.json`` and ``<out>/latest.png``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import data, modes, report, sides
from .runner import Context, log

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _scenarios() -> dict[str, Callable[[Context], Any]]:
    from . import resources, scenarios_db, scenarios_orm, scenarios_web

    table: dict[str, Callable[[Context], Any]] = {
        name: (lambda ctx, n=name: scenarios_db.run_read(ctx, n))
        for name in scenarios_db.READ_SCENARIOS
    }
    table["write"] = scenarios_db.run_write
    table["orm"] = scenarios_orm.run
    table["web"] = scenarios_web.run
    table["resources"] = resources.run
    return table


SCENARIO_NAMES = ("point", "scan", "udf", "heavy", "write", "orm", "web", "resources")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small data, short runs (< 2 min)")
    size.add_argument("--smoke", action="store_true", help="tiny run used by the test suite")
    p.add_argument("--only", help=f"comma list of scenarios ({','.join(SCENARIO_NAMES)})")
    p.add_argument("--sides", default="plain,mp", help="comma list: plain, mp (default both)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where latest.json/png go")
    p.add_argument("--data-dir", type=Path, default=data.DEFAULT_DATA_DIR)
    p.add_argument("--reps", type=int, help="repetitions per configuration")
    p.add_argument("--duration", type=float, help="seconds per timed run")
    p.add_argument("--workers", help="comma list of mpsqlite worker counts")
    p.add_argument("--threads", help="comma list of caller thread counts")
    return p.parse_args(argv)


def _ints(text: str | None) -> tuple[int, ...] | None:
    return tuple(int(x) for x in text.split(",")) if text else None


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios and write the report; exit status 1 on unexpected errors."""
    args = _parse(argv)
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    mode = modes.with_overrides(
        modes.get_mode(mode_name), reps=args.reps, duration=args.duration,
        workers=_ints(args.workers), threads=_ints(args.threads),
    )
    chosen = args.only.split(",") if args.only else list(SCENARIO_NAMES)
    unknown = set(chosen) - set(SCENARIO_NAMES)
    side_list = tuple(s.strip() for s in args.sides.split(",") if s.strip())
    if unknown or not set(side_list) <= {sides.PLAIN, sides.MP} or not side_list:
        print(f"unknown scenario or side: {sorted(unknown) or side_list}", file=sys.stderr)
        return 2
    if sides.MP in side_list and (why := sides.mp_available()):
        print(f"mpsqlite is not importable ({why}); use --sides plain", file=sys.stderr)
        return 2
    table = _scenarios()
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mpsqlite-bench-") as work:
        ctx = Context(mode, side_list, args.data_dir, Path(work))
        for name in chosen:
            log(f"== {name} ({mode_name}) ==")
            t0 = time.perf_counter()
            try:
                out = table[name](ctx)
            except Exception as exc:  # one broken scenario must not hide the others
                import traceback

                traceback.print_exc()
                failures[name] = f"{type(exc).__name__}: {exc}"
                continue
            finally:
                sides.shutdown_mp()
            if isinstance(out, dict):
                extra[name] = out
            else:
                results += out
            log(f"== {name} done in {time.perf_counter() - t0:.1f}s")
    payload = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "mode": mode_name,
            "cores": modes.cores(),
            "cpu": _cpu_name(),
            "versions": sides.versions(),
            "sides": side_list,
            "settings": mode.__dict__,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "results": results,
        **extra,
        "failures": failures,
    }
    report.write_json(args.out / "latest.json", payload)
    title = (f"mpsqlite vs plain, {mode_name} mode, {modes.cores()} cores, "
             f"{payload['meta']['date'][:10]}")
    drew = report.write_png(args.out / "latest.png", results, title)
    print(report.table(results))
    if "resources" in extra:
        print()
        print(report.resources_table(extra["resources"]))
    bad = _unexpected_errors(results)
    for line in bad + [f"{k} failed: {v}" for k, v in failures.items()]:
        print(f"PROBLEM: {line}")
    png = f" and {args.out / 'latest.png'}" if drew else ""
    print(f"\nwrote {args.out / 'latest.json'}{png} in {payload['meta']['seconds']}s")
    return 1 if (bad or failures) else 0


def _unexpected_errors(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        for side in ("plain", "mp"):
            s = r.get(side)
            if s and s["errors"] and side in r["zero_errors_expected"]:
                out.append(f"{r['scenario']} t={r['threads']} {side}: {s['errors']} errors "
                           f"{s['error_kinds']}")
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m bench [--quick|--smoke] [--only point,scan] [--sides plain,mp]``.

Runs the scenarios in order, prints a table on stdout (progress goes to stderr) and writes
``<out>/<mode>.json`` and ``<out>/<mode>.png``. ``<out>`` is ``bench/out/`` (git-ignored)
unless ``--out DIR`` is given, so a run leaves the checkout clean; ``--reference`` writes
the committed reference files instead (``bench/results/full.*`` from a full run,
``bench/results/latest.*`` from a quick one). Helpers built at run time (the fsync shim)
always go to the untracked output folder.
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
from .runner import CannotRun, Context, log

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"  # committed reference results (--reference)
OUT_DIR = BENCH_DIR / "out"  # default output, git-ignored
REFERENCE_NAMES = {"full": "full", "quick": "latest"}


def _scenarios() -> dict[str, Callable[[Context], Any]]:
    from . import (
        resources,
        scenarios_conn,
        scenarios_db,
        scenarios_gunicorn,
        scenarios_orm,
        scenarios_procs,
        scenarios_web,
        scenarios_wrk,
        slowdisk,
    )

    table: dict[str, Callable[[Context], Any]] = {
        name: (lambda ctx, n=name: scenarios_db.run_read(ctx, n))
        for name in scenarios_db.READ_SCENARIOS
    }
    table["write"] = scenarios_db.run_write
    table["connect"] = scenarios_conn.run_connect
    table["fresh"] = scenarios_conn.run_fresh
    table["procs"] = scenarios_procs.run
    table["orm"] = scenarios_orm.run
    table["web"] = scenarios_web.run
    table["web-wrk"] = scenarios_wrk.run_ordinary
    table["web-mixed"] = scenarios_wrk.run_mixed
    table["gunicorn"] = scenarios_gunicorn.run
    table["slowdisk"] = slowdisk.run
    table["resources"] = resources.run
    return table


SCENARIO_NAMES = (
    "point", "scan", "udf", "heavy", "write", "connect", "fresh", "procs", "slowdisk", "orm",
    "web", "web-wrk", "web-mixed", "gunicorn", "resources",
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small data, short runs (a few minutes)")
    size.add_argument("--smoke", action="store_true", help="tiny run used by the test suite")
    p.add_argument("--only", help=f"comma list of scenarios ({','.join(SCENARIO_NAMES)})")
    p.add_argument("--sides", default="plain,mp", help="comma list: plain, mp (default both)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help=f"folder for <mode>.json/png (default {OUT_DIR})")
    where.add_argument("--reference", action="store_true",
                       help="write the committed reference files bench/results/full.* "
                            "(full mode) or latest.* (quick mode)")
    p.add_argument("--data-dir", type=Path, default=data.DEFAULT_DATA_DIR)
    p.add_argument("--reps", type=int, help="repetitions per configuration")
    p.add_argument("--duration", type=float, help="seconds per timed run")
    p.add_argument("--workers", help="comma list of mpsqlite worker counts")
    p.add_argument("--threads", help="comma list of caller thread counts")
    p.add_argument("--fsync-delay-ms", type=float, help="slowdisk: sleep added to each fsync")
    p.add_argument("--procs", type=_layout, metavar="PxT",
                   help="procs: P writer processes of T threads each (default 4x8)")
    p.add_argument("--procs-duration", type=float, help="procs: seconds per timed run")
    p.add_argument("--gunicorn", type=_layout, metavar="PxT",
                   help="gunicorn: P processes of T threads each (default 2x8)")
    p.add_argument("--web-duration", type=float,
                   help="web, web-wrk, web-mixed, gunicorn: seconds per timed run")
    return p.parse_args(argv)


def output_paths(mode_name: str, out: Path | None, reference: bool) -> tuple[Path, Path]:
    """Where the JSON and PNG go: the committed reference files, ``out`` or ``bench/out``."""
    if reference:
        stem = REFERENCE_NAMES[mode_name]
        return RESULTS_DIR / f"{stem}.json", RESULTS_DIR / f"{stem}.png"
    folder = out or OUT_DIR
    return folder / f"{mode_name}.json", folder / f"{mode_name}.png"


def _layout(text: str) -> tuple[int, int]:
    """``4x8`` -> (4, 8)."""
    try:
        procs, threads = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PxT such as 4x8, not {text!r}") from None
    if procs < 1 or threads < 1:
        raise argparse.ArgumentTypeError("processes and threads must be at least 1")
    return procs, threads


def _ints(text: str | None) -> tuple[int, ...] | None:
    return tuple(int(x) for x in text.split(",")) if text else None


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios and write the report; exit status 1 on unexpected errors."""
    args = _parse(argv)
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    mode = modes.with_overrides(
        modes.get_mode(mode_name), reps=args.reps, duration=args.duration,
        workers=_ints(args.workers), threads=_ints(args.threads),
        fsync_delay_ms=args.fsync_delay_ms, procs_duration=args.procs_duration,
        procs=args.procs[0] if args.procs else None,
        procs_threads=args.procs[1] if args.procs else None,
        gunicorn_processes=args.gunicorn[0] if args.gunicorn else None,
        gunicorn_threads=args.gunicorn[1] if args.gunicorn else None,
        web_duration=args.web_duration,
    )
    if args.reference and mode_name not in REFERENCE_NAMES:
        print("--reference is for full or quick runs", file=sys.stderr)
        return 2
    json_path, png_path = output_paths(mode_name, args.out, args.reference)
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
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mpsqlite-bench-") as work:
        ctx = Context(mode, side_list, args.data_dir, Path(work), args.out or OUT_DIR)
        for name in chosen:
            log(f"== {name} ({mode_name}) ==")
            t0 = time.perf_counter()
            try:
                out = table[name](ctx)
            except CannotRun as why:
                log(f"== {name} cannot run: {why}")
                skipped[name] = str(why)
                continue
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
        "skipped": skipped,
    }
    report.write_json(json_path, payload)
    title = (f"mpsqlite vs plain sqlite3, {mode_name} mode, {modes.cores()} cores, "
             f"{payload['meta']['date'][:10]}")
    drew = report.write_png(png_path, results, title)
    print(report.table(results))
    details = report.details_table(results)
    if details:
        print()
        print(details)
    if "resources" in extra:
        print()
        print(report.resources_table(extra["resources"]))
    bad = _unexpected_errors(results)
    for name, why in skipped.items():
        print(f"NOT RUN: {name}: {why}")
    for line in bad + [f"{k} failed: {v}" for k, v in failures.items()]:
        print(f"PROBLEM: {line}")
    png = f" and {png_path}" if drew else ""
    print(f"\nwrote {json_path}{png} in {payload['meta']['seconds']}s")
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

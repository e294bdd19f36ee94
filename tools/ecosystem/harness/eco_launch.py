"""Run a test script in this interpreter with the eco harness installed.

    python eco_launch.py [--alias-sqlite3] [--results FILE] [--per-test-timeout S] \
        SCRIPT [ARGS...]

``--alias-sqlite3`` makes ``import sqlite3`` give mpsqlite to the code under
test (see eco_sqlite3_alias); ``--results`` records each unittest outcome as
a JSON line (see eco_unittest_recorder).  SCRIPT then runs as ``__main__``
with ``sys.argv = [SCRIPT, *ARGS]`` and its own folder first on ``sys.path``,
as ``python SCRIPT ARGS`` would run it.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import runpy
import sys
import threading


class _PoolWatch:
    """Proof that mpsqlite did the work: its pool counters, sampled while the tests run.

    Pools come and go with the test databases, so a daemon thread samples
    ``mpsqlite.pool_status()`` four times a second and keeps, per database path, the
    largest value seen of each counter; at exit the sums over databases go to
    stderr and, next to the results, to ``<results>.alias.json`` (read by
    compare.py) with the connections opened through the alias.
    """

    def __init__(self) -> None:
        self.maxima: dict[str, dict[str, float]] = {}
        self.pids: set[int] = set()
        self.error = ""
        self.stop = threading.Event()

    def sample(self) -> None:
        try:
            import mpsqlite

            for pool in mpsqlite.pool_status():
                seen = self.maxima.setdefault(str(pool.get("database")), {})
                for key, value in pool.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        seen[key] = max(seen.get(key, 0), value)
                for worker in pool.get("workers") or ():
                    pid = worker.get("pid") if isinstance(worker, dict) else None
                    if isinstance(pid, int):
                        self.pids.add(pid)
        except Exception as exc:  # the core is being rewritten: never fail the run here
            self.error = repr(exc)

    def loop(self) -> None:
        while not self.stop.wait(0.25):
            self.sample()

    def start(self) -> None:
        threading.Thread(target=self.loop, name="eco-pool-watch", daemon=True).start()
        atexit.register(self.report)

    def report(self) -> None:
        self.stop.set()
        self.sample()
        import eco_sqlite3_alias

        made = dict(eco_sqlite3_alias.opened())
        totals: dict[str, float] = {}
        for seen in self.maxima.values():
            for key, value in seen.items():
                totals[key] = totals.get(key, 0) + value
        summary = {"connections": made, "databases_seen": len(self.maxima),
                   "worker_pids_seen": len(self.pids), "pool_counter_maxima_summed": totals,
                   "pool_status_error": self.error}
        print(f"[eco] mpsqlite use: {json.dumps(summary)}", file=sys.stderr, flush=True)
        results = os.environ.get("ECO_RESULTS")
        if results:
            with open(results + ".alias.json", "w", encoding="utf-8") as fh:
                json.dump(summary, fh)


def main() -> None:
    parser = argparse.ArgumentParser(add_help=True)
    parser.add_argument("--alias-sqlite3", action="store_true")
    parser.add_argument("--results")
    parser.add_argument("--per-test-timeout", type=float, default=0.0)
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        sys.path.pop(0)
    if here not in sys.path:
        sys.path.append(here)  # settings modules and the recorders stay importable

    if opts.alias_sqlite3:
        import eco_sqlite3_alias

        alias = eco_sqlite3_alias.install()
        print(f"[eco] sqlite3 is now {alias!r}", file=sys.stderr)
        _PoolWatch().start()
    if opts.results:
        import eco_unittest_recorder

        eco_unittest_recorder.install(opts.results, opts.per_test_timeout)

    script = os.path.abspath(opts.script)
    sys.argv = [script, *opts.args]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()

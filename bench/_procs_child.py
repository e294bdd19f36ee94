"""Child process of the procs scenario: THREADS writer threads on one file, driven over stdin.

``python -m bench._procs_child SIDE PATH THREADS ROWS`` starts ``THREADS`` threads, each with
its own connection opened in that thread (plain: ``sqlite3.connect(PATH, timeout=5,
isolation_level="IMMEDIATE")`` on the WAL file, default ``synchronous``; mp:
``mpsqlite.connect(PATH)`` with its defaults), prints one JSON line once all are open and then
answers one JSON line per command line:

- ``run START DURATION``: at wall-clock time ``START`` (``time.time()``) every thread starts
  attempts until ``DURATION`` seconds later; an attempt is a point read of one of the first
  ``ROWS`` rows, an INSERT and a commit (rolled back on error). The answer has the commits
  and errors per thread, every attempt's latency in ns (failed ones included), the error
  kinds and when the last attempt ended.
- ``status``: the ``synchronous`` and ``journal_mode`` the connections have, and for mpsqlite
  its pool counters.

It exits when stdin closes.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import threading
import time
from collections import Counter
from typing import Any

from .scenarios_db import PAYLOAD

PLAIN_TIMEOUT = 5.0  # busy_timeout of the plain side, seconds


def open_connection(side: str, path: str) -> Any:
    """The connection one writer thread uses: recommended web settings, or mpsqlite's defaults."""
    if side == "plain":
        return sqlite3.connect(path, timeout=PLAIN_TIMEOUT, isolation_level="IMMEDIATE")
    import mpsqlite

    return mpsqlite.connect(path)


class _Writer(threading.Thread):
    """One writer thread: opens its connection, then runs one timed loop per ``go`` round."""

    def __init__(self, side: str, path: str, index: int, rows: int,
                 barrier: threading.Barrier, plan: dict[str, float]) -> None:
        super().__init__(daemon=True)
        self.side, self.path, self.index, self.rows = side, path, index, rows
        self.barrier, self.plan = barrier, plan
        self.settings: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        self.commits = self.errors = 0
        self.latencies: list[int] = []
        self.kinds: Counter = Counter()
        self.ended = 0.0

    def run(self) -> None:
        try:
            self._serve()
        except BaseException:
            self.barrier.abort()  # the main thread stops waiting and exits with the error
            raise

    def _serve(self) -> None:
        conn = open_connection(self.side, self.path)
        self.settings = {"synchronous": conn.execute("pragma synchronous").fetchone()[0],
                         "journal_mode": conn.execute("pragma journal_mode").fetchone()[0]}
        rng = random.Random(7000 + self.index)
        self.barrier.wait()  # opened
        while True:
            self.barrier.wait()  # a run (or the end) was announced
            if self.plan.get("stop"):
                conn.close()
                return
            self._loop(conn, rng)
            self.barrier.wait()  # finished

    def _loop(self, conn: Any, rng: random.Random) -> None:
        start, end = self.plan["start"], self.plan["start"] + self.plan["duration"]
        delay = start - time.time()
        if delay > 0:
            time.sleep(delay)
        clock = time.perf_counter_ns
        lat = self.latencies
        while time.time() < end:
            t0 = clock()
            try:
                row = conn.execute("select payload from w where id = ?",
                                   (rng.randint(1, self.rows),)).fetchone()
                if row is None:
                    raise AssertionError("point read found no row")
                conn.execute("insert into w (thread, payload) values (?, ?)",
                             (self.index, PAYLOAD))
                conn.commit()
            except Exception as exc:  # counted and reported, never hidden
                self.errors += 1
                self.kinds[f"{type(exc).__name__}: {exc}"[:120]] += 1
                try:
                    conn.rollback()
                except Exception as again:
                    self.kinds[f"rollback: {type(again).__name__}: {again}"[:120]] += 1
            else:
                self.commits += 1
            lat.append(clock() - t0)
        self.ended = time.time()


def _answer(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Serve ``run``/``status`` commands for ``argv = [side, path, threads, rows]``."""
    side, path, threads_text, rows_text = argv
    threads, rows = int(threads_text), int(rows_text)
    barrier = threading.Barrier(threads + 1)
    plan: dict[str, float] = {}
    writers = [_Writer(side, path, i, rows, barrier, plan) for i in range(threads)]
    for w in writers:
        w.start()
    barrier.wait()
    committed = 0
    _answer({"ready": True})
    try:
        for line in sys.stdin:
            command, *rest = line.split()
            if command == "run":
                plan.update(start=float(rest[0]), duration=float(rest[1]))
                for w in writers:
                    w.reset()
                barrier.wait()
                barrier.wait()
                kinds: Counter = Counter()
                for w in writers:
                    kinds.update(w.kinds)
                committed += sum(w.commits for w in writers)
                _answer({"commits": [w.commits for w in writers],
                         "errors": [w.errors for w in writers],
                         "latencies_ns": [x for w in writers for x in w.latencies],
                         "error_kinds": dict(kinds), "ended": max(w.ended for w in writers)})
            elif command == "status":
                pool: dict[str, Any] = {}
                if side == "mp":
                    import mpsqlite

                    for st in mpsqlite.pool_status():
                        pool = {k: st.get(k) for k in ("commits", "fsyncs", "writer_grants",
                                                       "workers")}
                        pool["workers"] = len(pool["workers"] or [])
                _answer({"committed": committed, "settings": writers[0].settings,
                         "pool": pool})
            else:
                _answer({"error": f"unknown command {command!r}"})
    finally:
        plan["stop"] = 1
        barrier.wait()
        for w in writers:
            w.join(10)
        if side == "mp":
            import mpsqlite

            mpsqlite.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

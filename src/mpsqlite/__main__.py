"""A threaded demo: ``python -m mpsqlite [--threads N] [--workers N]``.

Several threads run a query that calls a Python function for every row,
first through plain sqlite3, then through mpsqlite, and the demo prints
how many statements ran in this process, how many in each worker process
(the pids ``pool_status()`` lists), and how long each side took.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import mpsqlite

_QUERY = "select sum(score(a)), pid() from t"


def _score(value: int) -> int:
    return (value * 2654435761) % 1000


def with_functions(con: Any) -> Any:
    """``con`` with the demo's SQL functions: ``score(a)`` and ``pid()`` (where it ran)."""
    con.create_function("score", 1, _score)
    con.create_function("pid", 0, os.getpid)
    return con


def run_threads(connect: Any, threads: int, rounds: int) -> tuple[float, Counter[int]]:
    """Run the query ``rounds`` times in each of ``threads`` threads: (seconds, runs per pid)."""
    pids: Counter[int] = Counter()
    lock = threading.Lock()

    def work() -> None:
        con = connect()
        for _ in range(rounds):
            _total, pid = con.execute(_QUERY).fetchone()
            with lock:
                pids[pid] += 1
        con.close()

    start = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - start, pids


def by_process(pids: Counter[int], parent: int, workers: Iterable[int]
               ) -> tuple[int, dict[int, int], int]:
    """Split runs per pid into (runs in ``parent``, runs per worker pid, runs anywhere else).

    Only the pids of ``workers`` are listed as worker processes."""
    known = set(workers) - {parent}
    per_worker = {pid: n for pid, n in sorted(pids.items()) if pid in known}
    other = sum(n for pid, n in pids.items() if pid != parent and pid not in known)
    return pids.get(parent, 0), per_worker, other


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo and print what it measured."""
    parser = argparse.ArgumentParser(prog="python -m mpsqlite", description=__doc__)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mpsqlite-demo-") as tmp:
        path = os.path.join(tmp, "demo.db")
        setup = sqlite3.connect(path)
        setup.execute("create table t(id integer primary key, a int)")
        setup.executemany("insert into t(a) values (?)", ((i,) for i in range(args.rows)))
        setup.commit()
        setup.close()

        print(f"{args.threads} threads x {args.rounds} queries, each calling a Python "
              f"function for {args.rows:,} rows; {os.cpu_count()} cores")
        plain_s, _ = run_threads(lambda: with_functions(sqlite3.connect(path)), args.threads,
                                 args.rounds)
        print(f"  sqlite3:  {plain_s:6.2f} s, all in process {os.getpid()}")
        keep = mpsqlite.connect(path)  # keeps the database's memory of heavy statements
        mp_s, mp_pids = run_threads(
            lambda: with_functions(mpsqlite.connect(path, workers=args.workers)),
            args.threads, args.rounds)
        status = keep.pool_status()
        workers = [w["pid"] for w in status["workers"]]
        here, per_worker, other = by_process(mp_pids, os.getpid(), workers)
        spread = ", ".join(f"{pid}: {n}" for pid, n in per_worker.items())
        print(f"  mpsqlite: {mp_s:6.2f} s, {here} statements in this process (each first "
              f"run is judged here), per worker process {{{spread}}}"
              + (f", {other} in worker processes since stopped" if other else ""))
        print(f"  speed-up: {plain_s / mp_s:.2f}x")
        print(f"  workers: {len(workers)} of at most {status['size']} "
              f"(pids {', '.join(map(str, sorted(workers))) or 'none'}), "
              f"{status['offloaded_statements']} statements offloaded, "
              f"{status['errors']} errors")
        keep.close()
        mpsqlite.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

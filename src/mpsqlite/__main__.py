"""A threaded demo: ``python -m mpsqlite [--threads N] [--workers N]``.

Several threads run a query that calls a Python function for every row,
first through plain sqlite3, then through mpsqlite, and the demo prints
which worker processes ran the statements and how long each side took.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from typing import Any

import mpsqlite

_QUERY = "select sum(score(a)), pid() from t"


def _score(value: int) -> int:
    return (value * 2654435761) % 1000


def _run(connect: Any, threads: int, rounds: int) -> tuple[float, Counter]:
    pids: Counter = Counter()
    lock = threading.Lock()

    def work() -> None:
        con = connect()
        for _ in range(rounds):
            total, pid = con.execute(_QUERY).fetchone()
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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mpsqlite", description=__doc__)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mpsqlite-demo-") as tmp:
        path = os.path.join(tmp, "demo.db")
        setup = sqlite3.connect(path)
        setup.execute("create table t(id integer primary key, a int)")
        setup.executemany("insert into t(a) values (?)", ((i,) for i in range(args.rows)))
        setup.commit()
        setup.close()

        def with_functions(con: Any) -> Any:
            con.create_function("score", 1, _score)
            con.create_function("pid", 0, os.getpid)
            return con

        def plain() -> sqlite3.Connection:
            return with_functions(sqlite3.connect(path))

        print(f"{args.threads} threads x {args.rounds} queries, each calling a Python "
              f"function for {args.rows:,} rows; {os.cpu_count()} cores")
        plain_s, plain_pids = _run(plain, args.threads, args.rounds)
        print(f"  sqlite3:  {plain_s:6.2f} s, all in process {os.getpid()}")
        keep = mpsqlite.connect(path)  # keeps the database's memory of heavy statements
        mp_s, mp_pids = _run(lambda: with_functions(mpsqlite.connect(path, workers=args.workers)),
                             args.threads, args.rounds)
        here = mp_pids.pop(os.getpid(), 0)
        spread = ", ".join(f"{pid}: {n}" for pid, n in sorted(mp_pids.items()))
        print(f"  mpsqlite: {mp_s:6.2f} s, {here} statements in this process (each first "
              f"run is judged here), per worker process {{{spread}}}")
        print(f"  speed-up: {plain_s / mp_s:.2f}x")
        status = keep.pool_status()
        print(f"  workers: {len(status['workers'])} of at most {status['size']}, "
              f"{status['offloaded_statements']} statements offloaded, "
              f"{status['errors']} errors")
        keep.close()
        mpsqlite.shutdown()


if __name__ == "__main__":
    main()

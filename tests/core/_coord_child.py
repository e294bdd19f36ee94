"""A writer process for the cross-process writer queue tests (tests/core/test_processes.py).

``python _coord_child.py DB OUT THREADS SIDE``: THREADS threads each commit pairs of rows
(``a`` and ``b`` halves in one transaction) until ``OUT.stop`` exists, appending each
acknowledged commit to ``OUT.acks`` as it returns. SIDE is ``mp`` (mpsqlite) or ``plain``
(stdlib sqlite3, BEGIN IMMEDIATE, busy timeout). ``OUT.host`` appears while this process
hosts the file's coordinator; ``OUT.json`` gets the summary at the end.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def main(db: str, out: str, threads: int, side: str) -> None:
    if side == "mp":
        import mpsqlite

        def connect():
            return mpsqlite.connect(db, timeout=30, check_same_thread=False)
    else:
        import sqlite3

        def connect():
            return sqlite3.connect(db, timeout=30, isolation_level="IMMEDIATE")

    acks = open(out + ".acks", "a", buffering=1)
    ack_lock = threading.Lock()
    errors: list[str] = []
    commits = [0] * threads
    stop = out + ".stop"
    pid = os.getpid()
    turns: set = set()  # each connection's writer turn, seen while it is open

    def writer(t: int) -> None:
        con = connect()
        n = 0
        while not os.path.exists(stop):
            n += 1
            try:
                for half in ("a", "b"):
                    con.execute("insert into pairs(pid, thread, n, half) values (?, ?, ?, ?)",
                                (pid, t, n, half))
                con.commit()
            except Exception as exc:  # what the test counts: there must be none
                errors.append(f"{type(exc).__name__}: {exc}")
                try:
                    con.rollback()
                except Exception:
                    pass
                continue
            commits[t] += 1
            with ack_lock:
                acks.write(f"{pid} {t} {n}\n")
            if side == "plain":
                time.sleep(0.002)  # a tool beside the application, not a second one
        if side == "mp":
            turns.add(con._db.gate.turn)
        con.close()

    def watch_host() -> None:
        from mpsqlite import _database
        while not os.path.exists(stop):
            hosting = any(d.gate.turn is not None and d.gate.turn.hosting
                          for d in list(_database.registry.databases.values()))
            if hosting and not os.path.exists(out + ".host"):
                with open(out + ".host", "w") as f:
                    f.write(str(time.time()))
            time.sleep(0.005)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    if side == "mp":
        threading.Thread(target=watch_host, daemon=True).start()
    for w in workers:
        w.join()
    summary = {"errors": errors, "commits": commits}
    if side == "mp":
        summary["handoffs"] = sum(t.handoffs for t in turns)
    with open(out + ".json", "w") as f:
        json.dump(summary, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])

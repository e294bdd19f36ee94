"""The kill soak: pair writers and heavy readers while worker processes are SIGKILLed.

Each write transaction inserts the two rows of one pair and commits; a pair
counts as acknowledged only once ``commit()`` returned. One transaction in
DOOMED_EVERY names a missing parent row, a deferred foreign key: its commit
must fail and leave nothing (connections need foreign keys on). Readers run a read
that returns over 1000 rows, so mpsqlite sends it to a worker process, and
check that every pair they see is whole. A killer thread SIGKILLs a random
worker process (a child of this process running ``mpsqlite._worker``) every
100-300 ms. Afterwards an independent sqlite3 connection checks the file.
"""

from __future__ import annotations

import faulthandler
import os
import random
import re
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRITERS = 8
READERS = 4
#: Pairs in the table before the soak: the readers' result is heavy from the start.
PREFILL = 1000
#: One write transaction in this many is doomed to fail at its commit.
DOOMED_EVERY = 50
#: The readers' statement: one row per pair, with how many rows the pair has.
READ_SQL = "select pair, count(*) from t group by pair"
#: Words that mark an error whose commit may or may not have happened.
IN_DOUBT = re.compile(r"may or may not have been committed|outcome (?:is )?unknown", re.I)
#: Words that mark an error raised after the transaction was committed (a failed fsync).
COMMITTED = re.compile(r"the transaction was committed", re.I)
#: How long the threads may take to end after the load stops before it counts as a hang.
HANG_SECONDS = 60.0


@dataclass
class Tally:
    """What the soak's threads did (list appends are atomic; counters take the lock)."""

    acked: list[int] = field(default_factory=list)  # commit() returned
    failed: list[int] = field(default_factory=list)  # raised, not in doubt: must be absent
    in_doubt: list[int] = field(default_factory=list)  # the error says the outcome is unknown
    raised_committed: list[int] = field(default_factory=list)  # says it was committed anyway
    doomed_acked: list[int] = field(default_factory=list)  # a doomed commit that returned: a bug
    errors: Counter = field(default_factory=Counter)  # (phase, class, message shape) -> count
    reads: int = 0
    torn_reads: int = 0  # pairs a reader saw with other than two rows
    kills: int = 0
    killed: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, phase: str, exc: BaseException) -> None:
        with self.lock:
            self.errors[(phase, type(exc), _shape(str(exc)))] += 1

    def errors_in(self, phase: str) -> int:
        return sum(n for (p, _, _), n in self.errors.items() if p == phase)

    def read(self, torn: int) -> None:
        with self.lock:
            self.reads += 1
            self.torn_reads += torn


def _shape(message: str) -> str:
    """The message with pids and other numbers blanked, so that errors can be counted."""
    return re.sub(r"\d+", "N", message)


def _name(cls: type) -> str:
    """The class and, for mpsqlite's errors under driver=, the classes it stands for."""
    bases = "" if len(cls.__bases__) < 2 else "(" + ", ".join(map(_name, cls.__bases__)) + ")"
    return f"{cls.__module__}.{cls.__qualname__}{bases}"


def create(path: Path) -> None:
    """The table of pairs, in WAL mode, with PREFILL whole pairs (ids below 0)."""
    with closing(sqlite3.connect(str(path))) as con:
        con.execute("pragma journal_mode=wal")
        con.execute("create table parent(id integer primary key)")
        con.execute("create table t(id integer primary key, pair integer not null, "
                    "side integer not null, ref integer references parent(id) "
                    "deferrable initially deferred, unique(pair, side))")
        con.executemany("insert into t(pair, side) values (?, ?)",
                        ((-1 - p, s) for p in range(PREFILL) for s in (0, 1)))
        con.commit()


def worker_children() -> set[int]:
    """Pids of this process's live children that run an mpsqlite worker."""
    me = os.getpid()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == me and state != "Z" and b"mpsqlite._worker" in cmdline:
            found.add(int(name))
    return found


def zombie_children() -> set[int]:
    """Pids of this process's children that ended and were never reaped."""
    me = os.getpid()
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                state, ppid = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[:2]
            except OSError:
                continue
            if int(ppid) == me and state == "Z":
                found.add(int(name))
    return found


def _writer(connect: Callable[[], Any], index: int, stop: threading.Event, tally: Tally) -> None:
    con = connect()
    try:
        n = 0
        while not stop.is_set():
            pair = index * 10_000_000 + n
            n += 1
            doomed = n % DOOMED_EVERY == 0
            ref = -1 if doomed else None  # parent -1 never exists
            try:
                con.execute("insert into t(pair, side, ref) values (?, 0, ?)", (pair, ref))
                con.execute("insert into t(pair, side, ref) values (?, 1, ?)", (pair, ref))
            except Exception as exc:
                tally.error("insert", exc)
                tally.failed.append(pair)
                _rollback(con, tally)
                continue
            try:
                con.commit()
            except Exception as exc:
                tally.error("commit-doomed" if doomed else "commit", exc)
                text = str(exc)
                if IN_DOUBT.search(text):
                    tally.in_doubt.append(pair)
                elif COMMITTED.search(text):
                    tally.raised_committed.append(pair)
                else:
                    tally.failed.append(pair)
                _rollback(con, tally)
                continue
            (tally.doomed_acked if doomed else tally.acked).append(pair)
    finally:
        con.close()


def _rollback(con: Any, tally: Tally) -> None:
    try:
        con.rollback()
    except Exception as exc:
        tally.error("rollback", exc)


def _reader(connect: Callable[[], Any], stop: threading.Event, tally: Tally) -> None:
    con = connect()
    try:
        while not stop.is_set():
            try:
                rows = con.execute(READ_SQL).fetchall()
            except Exception as exc:
                tally.error("read", exc)
                continue
            tally.read(sum(1 for _, count in rows if count != 2))
    finally:
        con.close()


def _killer(stop: threading.Event, tally: Tally) -> None:
    rng = random.Random(12)
    while not stop.wait(rng.uniform(0.1, 0.3)):
        pids = sorted(worker_children())
        if not pids:
            continue
        pid = rng.choice(pids)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        tally.kills += 1
        tally.killed.append(pid)


def _dump_stacks(what: str) -> None:
    sys.__stderr__.write(f"\n=== kill soak: {what}; stacks of every thread ===\n")
    faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)


def run(connect: Callable[[], Any], seconds: float) -> Tally:
    """Run the load for ``seconds`` with a killer; fail on a hang (stacks dumped)."""
    tally = Tally()
    stop = threading.Event()
    threads = [threading.Thread(target=_writer, args=(connect, i, stop, tally),
                                name=f"writer-{i}", daemon=True) for i in range(WRITERS)]
    threads += [threading.Thread(target=_reader, args=(connect, stop, tally),
                                 name=f"reader-{i}", daemon=True) for i in range(READERS)]
    killer = threading.Thread(target=_killer, args=(stop, tally), name="killer", daemon=True)
    for thread in threads:
        thread.start()
    killer.start()
    time.sleep(seconds)
    stop.set()
    deadline = time.monotonic() + HANG_SECONDS
    for thread in [killer, *threads]:
        thread.join(max(deadline - time.monotonic(), 0.0))
    hung = [t.name for t in [killer, *threads] if t.is_alive()]
    if hung:
        _dump_stacks(f"threads still running {HANG_SECONDS:g} s after the load stopped: {hung}")
        raise AssertionError(f"hang: {hung} did not end (stacks on stderr)")
    return tally


def check(path: Path, tally: Tally) -> dict[str, Any]:
    """What the file holds against what the threads were told; the figures for the report."""
    with closing(sqlite3.connect(str(path))) as con:
        integrity = con.execute("pragma integrity_check").fetchall()
        counts = dict(con.execute("select pair, count(*) from t group by pair"))
    missing = [p for p in tally.acked + tally.raised_committed if counts.get(p) != 2]
    present = [p for p in tally.failed if p in counts]
    half = {p: n for p, n in counts.items() if n != 2}
    doubt_committed = sum(1 for p in tally.in_doubt if counts.get(p) == 2)
    return {
        "integrity": integrity,
        "missing_acknowledged": missing,
        "raised_but_present": present,
        "half_pairs": half,
        "acknowledged": len(tally.acked),
        "raised_checked_absent": len(tally.failed),
        "raised_but_committed": len(tally.raised_committed),
        "in_doubt": len(tally.in_doubt),
        "doomed_acknowledged": tally.doomed_acked,
        "in_doubt_committed": doubt_committed,
        "kills": tally.kills,
        "reads": tally.reads,
        "torn_reads": tally.torn_reads,
        "errors": {f"{phase} | {_name(cls)} | {message}": n
                   for (phase, cls, message), n in tally.errors.items()},
    }


def watchdog(seconds: float) -> Any:
    """Dump every thread's stack and end the process if the caller is still here after
    ``seconds`` (a hang in close or shutdown, where no thread can report it)."""

    class _Dog:
        def __enter__(self) -> None:
            faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)

        def __exit__(self, *exc: Any) -> None:
            faulthandler.cancel_dump_traceback_later()

    return _Dog()

"""Differential runs: one seeded random sequence of operations on sqlite3 and on mpsqlite.

Two identical database files (WAL, a 1300-row table ``big`` and a table ``t0``)
get the same operations, one through the stdlib ``sqlite3`` and one through
``mpsqlite``, with the same connect arguments (``timeout=0.05``, so lock waits
end quickly on both sides). After every step the two records must be equal:
fetched rows, ``rowcount``, ``lastrowid``, ``description``, warnings, the
exception class (and, for errors that come from SQLite on both sides, its
error code and message with the file path normalised), and every open
connection's ``in_transaction`` and ``total_changes``. At the end both files
must dump the same.

The operations are a pure function of the seed (:mod:`._diff_ops`), so a run
replays exactly::

    python -m tests.reliability._differential --seed 3 --steps 500
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sqlite3
import sys
import tempfile
import time
import warnings
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.reliability._diff_ops import BIG_ROWS, SLOTS, Generator, Op

#: What both files hold before the first step (set up with plain sqlite3).
SETUP = f"""
pragma journal_mode = wal;
create table big(x integer primary key, s text);
with recursive r(i) as (select 0 union all select i + 1 from r where i < {BIG_ROWS - 1})
insert into big select i, 's' || i from r;
create table t0(id integer primary key, a integer, b text, u integer unique);
"""


def _norm_row(row: Any) -> Any:
    if isinstance(row, sqlite3.Row):
        return ("Row", tuple(row.keys()), tuple(row))
    return row


_NOT_ERRORS = (100, 101)  # SQLITE_ROW, SQLITE_DONE


def _describe_exc(exc: BaseException, path: str) -> dict[str, Any]:
    """The comparable part of an exception (class; SQLite's code and message if from SQLite)
    and its message, which is shown but compared only when SQLite wrote it."""
    info: dict[str, Any] = {"class": f"{type(exc).__module__}.{type(exc).__qualname__}"}
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None)
    if code in _NOT_ERRORS:
        # sqlite3 raised for a parameter it could not bind (an int over 64 bits) while
        # another statement was part-way, with the connection's last result: SQLITE_ROW
        # and whatever message an earlier call left, which says nothing of this statement.
        info["sqlite"] = (code, name)
    else:
        info["sqlite"] = None if code is None else (code, name, str(exc).replace(path, "<db>"))
    info["message~"] = str(exc)
    return info


def _foreign(caught: warnings.WarningMessage) -> bool:
    """A warning about an object neither module makes: a TCP socket another test left to
    the garbage collector, collected during a step."""
    return (issubclass(caught.category, ResourceWarning)
            and str(caught.message).startswith("unclosed <socket.socket")
            and ("family=2," in str(caught.message) or "family=10," in str(caught.message)))


class Side:
    """One database file and the connections, by slot, that one module opened on it."""

    def __init__(self, module: ModuleType, path: Path) -> None:
        self.module = module
        self.path = str(path)
        self.cons: list[Any] = [None] * SLOTS
        self.curs: list[dict[str, Any]] = [{} for _ in range(SLOTS)]

    def apply(self, op: Op) -> dict[str, Any]:
        """Run ``op`` and return what it did, as a record to compare with the other side's."""
        record: dict[str, Any] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self._run(op, record)
            except Exception as exc:  # noqa: BLE001 - the exception is the result
                record["raised"] = _describe_exc(exc, self.path)
        record["warnings"] = [(w.category.__name__, str(w.message)) for w in caught
                              if not _foreign(w)]
        record["state"] = [None if c is None else (c.in_transaction, c.total_changes)
                           for c in self.cons]
        return record

    def _cursor(self, slot: int, target: str) -> Any:
        if target == "conn":
            return None
        cur = self.curs[slot].get(target)
        if cur is None:
            raise LookupError(f"no cursor {target!r} on slot {slot}")
        return cur

    def _run(self, op: Op, record: dict[str, Any]) -> None:
        name, slot, args = op[0], op[1], op[2:]
        con = self.cons[slot]
        if name == "open":
            (kwargs,) = args
            self.cons[slot] = con = self.module.connect(self.path, **kwargs)
            self.curs[slot] = {"c0": con.cursor(), "c1": con.cursor()}
        elif name == "close":
            self.cons[slot], self.curs[slot] = None, {}
            con.close()
        elif name in ("commit", "rollback"):
            getattr(con, name)()
        elif name == "isolation":
            con.isolation_level = args[0]
        elif name == "autocommit":
            con.autocommit = args[0]
        elif name == "row_factory":
            con.row_factory = sqlite3.Row if args[0] else None
        elif name == "fetch":
            target, fetch = args
            self._fetch(self.curs[slot].get(target), fetch, record)
        elif name == "execute":
            target, sql, params, fetch = args
            cur = self._cursor(slot, target)
            call = (cur or con).execute
            cur = call(sql) if params is None else call(sql, params)
            self.curs[slot]["last"] = cur
            self._fetch(cur, fetch, record)
        elif name == "executemany":
            target, sql, how, rows = args
            cur = self._cursor(slot, target)
            seq = iter(list(rows)) if how == "gen" else list(rows)
            cur = (cur or con).executemany(sql, seq)
            self.curs[slot]["last"] = cur
            self._fetch(cur, "none", record)
        elif name == "executescript":
            target, script = args
            cur = (self._cursor(slot, target) or con).executescript(script)
            self.curs[slot]["last"] = cur
            self._fetch(cur, "none", record)
        else:
            raise ValueError(f"unknown operation {name!r}")

    @staticmethod
    def _fetch(cur: Any, fetch: str, record: dict[str, Any]) -> None:
        if cur is None:
            record["cursor"] = None
            return
        record["cursor"] = (cur.rowcount, cur.lastrowid, cur.description)
        if fetch == "all":
            rows = cur.fetchall()
        elif fetch == "one":
            rows = [cur.fetchone()]
        elif fetch.startswith("many"):
            rows = cur.fetchmany(int(fetch[4:]))
        else:
            return
        record["rows"] = [_norm_row(r) for r in rows]
        record["after"] = (cur.rowcount, cur.lastrowid, cur.description)

    def close_all(self) -> None:
        for slot, con in enumerate(self.cons):
            if con is not None:
                try:
                    con.close()
                except Exception:  # noqa: BLE001 - teardown closes the rest
                    pass
            self.cons[slot], self.curs[slot] = None, {}


def _bind_error(params: Any) -> str | None:
    """The exception class binding ``params`` raises on a freshly prepared statement, if any."""
    if isinstance(params, dict):
        if not all(isinstance(k, str) and k.isidentifier() for k in params):
            return None
        sql = "select " + ", ".join(":" + k for k in params) if params else "select 1"
    elif isinstance(params, (tuple, list)):
        sql = "select " + ", ".join("?" * len(params)) if params else "select 1"
    else:
        return None
    with closing(sqlite3.connect(":memory:", cached_statements=0)) as scratch:
        try:
            scratch.execute(sql, params)
        except Exception as exc:  # noqa: BLE001 - the class is the answer
            return f"{type(exc).__module__}.{type(exc).__qualname__}"
    return None


def stale_error_quirk(op: Op, want: dict[str, Any], got: dict[str, Any]) -> bool:
    """CPython 3.11+: when binding fails on a statement found in the statement cache
    (``execute``, or the first row of ``executemany``),
    sqlite3 raises the connection's last SQLite result instead (an earlier error, or even
    SQLITE_ROW 'another row available'). The two sides' caches differ (mpsqlite prepares
    statements of its own, and a read run on a worker is not prepared in the caller), so
    one side may raise the bind error and the other the stale result: that is a match."""
    a, b = want.get("raised"), got.get("raised")
    if op[0] not in ("execute", "executemany") or a is None or b is None:
        return False
    if op[0] == "execute":
        bind = _bind_error(op[4])
    else:  # the same quirk when executemany's first row fails to bind
        bind = _bind_error(op[5][0]) if op[5] else None
    return bind is not None and any(
        bound["class"] == bind and stale["sqlite"] is not None
        for bound, stale in ((a, b), (b, a)))


def _gate_timeout(info: dict[str, Any]) -> bool:
    """mpsqlite's writer gate timed out: sqlite3's class and message, no SQLite error code."""
    return (info["sqlite"] is None and info["class"] == "sqlite3.OperationalError"
            and info["message~"] == "database is locked")


def comparable(record: dict[str, Any]) -> str:
    """The record without what may legitimately differ (keys ending in ``~``), as text:
    ``repr`` makes NaN equal to NaN and keeps -0.0 apart from 0.0."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not k.endswith("~")}
        return value

    return repr(strip(record))


def _short(record: dict[str, Any]) -> str:
    shown = dict(record)
    rows = shown.get("rows")
    if rows is not None and len(rows) > 4:
        shown["rows"] = [*rows[:3], f"... {len(rows)} rows in all"]
    return repr(shown)


def dump(path: Path) -> list[str]:
    """Every statement that rebuilds the file, read with plain sqlite3."""
    with closing(sqlite3.connect(str(path))) as con:
        return list(con.iterdump())


@dataclass
class Outcome:
    """What a run compared, and the first divergence, if any."""

    seed: int
    slots: int
    steps: int = 0
    ops: list[Op] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # sqlite3's exception classes
    offloaded: int = 0  # mpsqlite reads that ran on a worker
    gate_timeouts: int = 0  # lock waits that ended in mpsqlite's writer gate
    stale_errors: int = 0  # steps normalised by stale_error_quirk
    divergence: str | None = None

    def report(self, tail: int = 60) -> str:
        """The divergence, the operations that led to it, and how to replay them."""
        shown = self.ops if len(self.ops) <= 2 * tail else self.ops[-tail:]
        first = len(self.ops) - len(shown)
        lines = [f"seed {self.seed}: {self.divergence}",
                 f"replay: python -m tests.reliability._differential --seed {self.seed} "
                 f"--steps {len(self.ops)} --connections {self.slots}",
                 f"operations {first}..{len(self.ops) - 1} of {len(self.ops)}:"]
        lines += [f"  {first + i}: {op!r}" for i, op in enumerate(shown)]
        return "\n".join(lines)


def run(seed: int, steps: int, directory: Path, slots: int = SLOTS,
        echo: bool = False) -> Outcome:
    """Run ``steps`` operations of ``seed`` on both modules in ``directory``, on ``slots``
    connections; stop at the first divergence. ``echo`` prints each step."""
    mp = importlib.import_module("mpsqlite")
    gc.collect()  # what earlier tests left is collected now, not during a step
    sides = []
    for name in ("sqlite3", "mpsqlite"):
        path = directory / f"{name}.db"
        with closing(sqlite3.connect(str(path))) as con:
            con.executescript(SETUP)
        sides.append(Side(sqlite3 if name == "sqlite3" else mp, path))
    ref, mps = sides
    gen = Generator(seed, slots)
    outcome = Outcome(seed, slots)
    try:
        for step in range(steps):
            op = gen.next()
            outcome.ops.append(op)
            want, got = ref.apply(op), mps.apply(op)
            outcome.steps = step + 1
            if "raised" in want:
                outcome.errors[want["raised"]["class"]] += 1
                if "raised" in got and _gate_timeout(got["raised"]):
                    want["raised"]["sqlite"] = None  # the lock wait ended in the gate
                    outcome.gate_timeouts += 1
            if comparable(want) != comparable(got) and stale_error_quirk(op, want, got):
                want["raised"] = got["raised"]
                outcome.stale_errors += 1
            if echo:
                print(f"{step}: {op!r}\n    sqlite3:  {_short(want)}")
            if comparable(want) != comparable(got):
                outcome.divergence = (f"step {step} differs: {op!r}\n  sqlite3:  {_short(want)}"
                                      f"\n  mpsqlite: {_short(got)}")
                break
            if echo:
                print("    mpsqlite: same")
        outcome.offloaded = sum(
            s["offloaded_statements"] for s in mp.pool_status() if s["database"] == mps.path)
    finally:
        ref.close_all()
        mps.close_all()
    if outcome.divergence is None:
        before, after = dump(ref.path), dump(mps.path)  # type: ignore[arg-type]
        if before != after:
            diff = [f"- {a}\n+ {b}" for a, b in zip(before, after) if a != b][:5]
            outcome.divergence = ("the files differ at the end:\n" + "\n".join(diff)
                                  + f"\n({len(before)} vs {len(after)} statements)")
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Replay one seed, printing every step; exit status 1 on a divergence."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--connections", type=int, default=SLOTS, choices=range(1, SLOTS + 1))
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        outcome = run(args.seed, args.steps, Path(tmp), args.connections, echo=not args.quiet)
        took = time.monotonic() - t0
    print(f"seed {args.seed}: {outcome.steps} steps in {took:.1f} s, "
          f"{outcome.offloaded} offloaded reads, {outcome.gate_timeouts} gate timeouts, "
          f"{outcome.stale_errors} stale errors, errors {dict(outcome.errors)}")
    if outcome.divergence is not None:
        print(outcome.report())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cheap reads in the calling thread, on a private read-only connection.

A round trip to a worker costs tens of microseconds; a point query costs a
few. So a read outside any transaction first runs here, on a read-only
connection of the calling thread (WAL keeps it consistent with the workers:
each statement sees everything committed before it started).

What costs a threaded caller is time under the GIL, not SQLite's own work:
sqlite3 releases the GIL while SQLite runs, and takes it for every row it
builds and every Python function SQLite calls. So a statement moves to the
workers, and stays there, when it returns more rows than one reply carries,
or when it calls a Python function or collation registered on the pool and
proves expensive (the median CPU time of its recent runs over
``CHEAP_SECONDS``, or forty times that once). Pure SQL with a small result
stays here however long SQLite works on it, exactly as with plain sqlite3.
A first run may be slow for reasons of its own (schema load, cold cache),
hence the several runs; runs that waited for the GIL are not sampled, since
hand-offs between busy threads inflate their CPU time.
"""

from __future__ import annotations

import pickle
import re
import sqlite3
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from . import protocol as p

if TYPE_CHECKING:
    from .pool import Pool

# A round trip to a worker costs ~60-100 us; below this much CPU a statement is
# cheaper here, even for threads that queue for the GIL meanwhile.
CHEAP_SECONDS = 250e-6
_SAMPLES = 15  # recent timed runs whose median decides, once there are _MIN_SAMPLES
_MIN_SAMPLES = 5
_TIME_EVERY = 4  # after its first runs, one run in this many is timed...
_SAMPLE_EVERY = 16  # ...and one in this many sampled for the median
_CONTENDED = 20e-6  # wall time beyond CPU time that marks a run as having waited
_MEMO_LIMIT = 4096  # distinct statements remembered per pool
_clock = time.thread_time
_wall = time.perf_counter
_NAMED_CALLBACKS = frozenset(
    {"create_function", "create_aggregate", "create_window_function", "create_collation"}
)
_HOOKS = frozenset({"set_authorizer", "set_progress_handler"})


# Schema pragmas answer from the connection's cached schema without checking
# that it is current; any read of sqlite_master reloads a stale one.
_SCHEMA_CHECK = "SELECT 1 FROM sqlite_master LIMIT 0"


class _ThreadState:
    """One thread's read-only connection and what it has applied."""

    __slots__ = ("con", "cur", "applied", "tf", "fresh", "owner", "__weakref__")

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        # One cursor reused by every plain statement of the thread (None while
        # in use, so a statement run from inside another gets its own).
        self.cur: sqlite3.Cursor | None = con.cursor()
        self.applied = 0
        self.tf: Any = str
        self.fresh = True
        self.owner: Any = None


class LocalReads:
    """Per-thread read-only connections to a pool's database, and what is cheap."""

    def __init__(
        self, pool: Pool, database: str, uri: bool, detect_types: int, timeout: float
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        if uri:
            sep = "&" if "?" in database else "?"
            self._target = f"{database}{sep}mode=ro"
        else:
            self._target = "file:" + database.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        self._detect_types = detect_types
        self._tls = threading.local()
        self.heavy: set[str] = set()
        self._cost: dict[str, list[float]] = {}
        self._py_names: set[str] = set()
        self._py_pattern: re.Pattern[str] | None = None
        self._calls_python: dict[str, bool] = {}
        self._plain: dict[str, bool] = {}  # statements fit for the lean path of run()
        self.disabled = False
        self._states: list[weakref.ref[_ThreadState]] = []
        self._states_lock = threading.Lock()
        self._tick = 0
        self.statements = 0

    def _open(self) -> _ThreadState:
        con = sqlite3.connect(
            self._target, uri=True, detect_types=self._detect_types, timeout=self._timeout,
            check_same_thread=False, isolation_level=None,
        )
        state = _ThreadState(con)
        self._tls.state = state
        with self._states_lock:
            self._states.append(weakref.ref(state))
        return state

    def _catch_up(self, state: _ThreadState) -> None:
        """Apply the pool's setup entries this thread's connection has not seen."""
        setup = self._pool.setup
        while state.applied < len(setup):
            kind, _, payload = setup[state.applied]
            if kind == p.SETUP_CALL:
                name, args, kwargs = pickle.loads(payload)
                self._note_python(name, args)
                if name not in ("load_extension", "enable_load_extension", "set_trace_callback"):
                    getattr(state.con, name)(*args, **kwargs)
            elif kind == p.SETUP_SQL:
                try:
                    state.con.execute(*p.setup_sql(payload)).fetchall()
                except sqlite3.Error:
                    pass  # e.g. a pragma a read-only connection may not set
            state.applied += 1

    def _note_python(self, method: str, args: tuple) -> None:
        """Remember SQL names that call back into Python (functions, collations)."""
        if method in _NAMED_CALLBACKS:
            name = str(args[0]).lower()
            if name not in self._py_names:
                self._py_names.add(name)
                names = "|".join(re.escape(n) for n in sorted(self._py_names))
                self._py_pattern = re.compile(rf"\b(?:{names})\b", re.I)
                self._calls_python.clear()
                self._plain.clear()
        elif method in _HOOKS and args and args[0] is not None:
            self._py_pattern = re.compile(r"")  # a hook runs Python for every statement
            self._calls_python.clear()
            self._plain.clear()

    def calls_python(self, sql: str) -> bool:
        """Whether ``sql`` may call Python (and hold the GIL) while SQLite runs it."""
        known = self._calls_python.get(sql)
        if known is None:
            pattern = self._py_pattern
            known = pattern is not None and pattern.search(sql) is not None
            self._calls_python[sql] = known
        return known

    def run(self, owner: Any, sql: str, params: Any, text_factory: Any) -> tuple | None:
        """The reply a worker would give, or None when the workers should run it."""
        # The lean path: most reads are plain SQL on a thread whose connection
        # is up to date; every microsecond here is held under the GIL.
        state = getattr(self._tls, "state", None)
        if (
            state is not None
            and self._plain.get(sql)
            and text_factory is str
            and state.tf is str
            and state.applied == len(self._pool.setup)
        ):
            cur = state.cur
            if cur is not None:
                state.cur, state.owner = None, owner
                try:
                    rows = self._first_rows(cur, sql, params)
                finally:
                    state.cur, state.owner = cur, None
                if rows is None:
                    return None
                if len(rows) == p.FIRST_ROWS:
                    self.heavy.add(sql)
                    cur.close()  # ends the statement, and the read snapshot it holds
                    state.cur = state.con.cursor()
                    return None
                self.statements += 1
                return (cur.description, cur.rowcount, cur.lastrowid, rows, False, False, 0)
        return self._run(owner, sql, params, text_factory, state)

    def _run(
        self, owner: Any, sql: str, params: Any, text_factory: Any, state: _ThreadState | None
    ) -> tuple | None:
        if state is None:
            try:
                state = self._open()
            except sqlite3.Error:
                self.disabled = True
                return None
        if state.applied < len(self._pool.setup):
            try:
                self._catch_up(state)
            except Exception:
                self.disabled = True
                return None
        con = state.con
        if state.tf is not text_factory:
            con.text_factory = state.tf = text_factory
        self._tick = tick = self._tick + 1
        # Pure SQL runs with the GIL released, as in plain sqlite3, whatever it
        # costs; only statements that call Python are timed and may move.
        python = self.calls_python(sql)
        pragma = sql[:6].upper() == "PRAGMA"
        if sql not in self._plain:
            if len(self._plain) > _MEMO_LIMIT:  # SQL with literals inlined never repeats
                self._plain.clear()
                self._calls_python.clear()
            self._plain[sql] = not python and not pragma
        recent = self._cost.get(sql)
        learning = python and (recent is None or len(recent) < _SAMPLES)
        timed = learning or (python and not tick % _TIME_EVERY)
        if timed:
            wall, cpu = _wall(), _clock()
        state.owner = owner
        cur = con.cursor()
        try:
            if pragma:
                cur.execute(_SCHEMA_CHECK)
            rows = self._first_rows(cur, sql, params)
        finally:
            state.owner = None
        if rows is None:
            cur.close()
            return None
        if len(rows) == p.FIRST_ROWS:
            self.heavy.add(sql)
            cur.close()
            return None
        if timed:
            cost = _clock() - cpu
            waited = _wall() - wall - cost
            if cost > 40 * CHEAP_SECONDS:
                self.heavy.add(sql)  # far beyond any noise: no need to wait for a median
            elif state.fresh:  # the first statement also loads the schema: not a fair sample
                state.fresh = False
            elif (learning or not tick % _SAMPLE_EVERY) and waited < _CONTENDED:
                # A run that waited for the GIL is not sampled: hand-offs between
                # busy threads cost CPU that is no fault of the statement.
                self._judge(sql, cost)
        self.statements += 1
        reply = (cur.description, cur.rowcount, cur.lastrowid, rows, False, False, 0)
        cur.close()
        return reply

    def _first_rows(self, cur: sqlite3.Cursor, sql: str, params: Any) -> list | None:
        """Run ``sql`` on ``cur``: its first rows, or None if only a worker may run it."""
        try:
            if params is None:
                cur.execute(sql)
            else:
                cur.execute(sql, params)
            return cur.fetchmany(p.FIRST_ROWS) if cur.description is not None else []
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc) or "read-only" in str(exc):
                self.heavy.add(sql)  # it writes after all (a function with side effects...)
                return None
            raise

    def _judge(self, sql: str, cost: float) -> None:
        recent = self._cost.setdefault(sql, [])
        recent.append(cost)
        del recent[:-_SAMPLES]
        median = sorted(recent)[len(recent) // 2]
        if len(recent) >= _MIN_SAMPLES and median > CHEAP_SECONDS:
            self.heavy.add(sql)

    def interrupt(self, owner: Any) -> None:
        """Interrupt the local statements ``owner`` is running."""
        with self._states_lock:
            states = [ref() for ref in self._states]
            self._states = [ref for ref, st in zip(self._states, states) if st is not None]
        for state in states:
            if state is not None and state.owner is owner:
                state.con.interrupt()

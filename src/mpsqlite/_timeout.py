"""``statement_timeout`` and ``log_slow_statements``: each statement of a connection, timed once.

``statement_timeout=X`` (seconds) bounds each statement: a statement still
running X seconds after it began is interrupted and raises
:class:`sqlite3.OperationalError` (``statement exceeded statement_timeout=X s
...``). The connection stays usable; as after any interrupt, SQLite rolls back
an open transaction when it interrupts an INSERT, UPDATE or DELETE. What
counts is the time spent inside the statement's calls: ``execute``,
``executemany`` and ``executescript`` (each one statement, including the wait
for the writer gate), and the fetches of a SELECT that is still running (the
time the application spends between fetches does not count).

SQLite checks for an interrupt between its own steps, so in the calling
process it cannot stop a Python function it is calling (``create_function``,
aggregates, collations): the statement stops when the function returns. On a
worker such a statement is ended by killing the worker process
``KILL_GRACE`` seconds after the deadline; the pool starts a new one.

``log_slow_statements=Y`` logs, once, every statement that ran Y seconds or
more, at WARNING on the ``mpsqlite.statements`` logger, with where it ran and
its SQL (shortened, never its parameters). A connection that sets neither
option pays one attribute lookup per statement.
"""

from __future__ import annotations

import logging
import sqlite3
import weakref
from collections.abc import Callable
from time import monotonic
from typing import Any, TypeVar

from ._timer import Deadline
from ._wire import exceeded, interrupted

#: Seconds past a statement's deadline after which a worker that has not answered is killed.
KILL_GRACE = 2.0
#: Characters of SQL a slow-statement record shows.
SQL_LOG_CHARS = 200

log = logging.getLogger("mpsqlite.statements")
_HERE = "in the calling process"
_base_interrupt = sqlite3.Connection.interrupt
_T = TypeVar("_T")


def check_seconds(name: str, value: Any) -> float | None:
    """``value`` as seconds: a positive number or None, else ValueError naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, not {value!r}")
    return float(value)


def interrupter(con: Any, interrupt: Callable[[Any], None] = _base_interrupt
                ) -> Callable[[], None]:
    """``interrupt(con)`` while ``con`` lives, holding it weakly."""
    ref = weakref.ref(con)

    def call() -> None:
        c = ref()
        if c is not None:
            interrupt(c)

    return call


class Clock:
    """The statement timing of one connection: its deadline and slow-statement threshold.
    ``interrupt`` stops the statement running in this process (a worker keeps its own
    deadline)."""

    __slots__ = ("limit", "slow", "name", "deadline")

    def __init__(self, interrupt: Callable[[], None], limit: float | None,
                 slow: float | None, name: str) -> None:
        self.limit = limit
        self.slow = slow
        self.name = name
        self.deadline = Deadline(interrupt) if limit is not None else None

    def call(self, stmt: Statement, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` as one call of ``stmt`` (an execute or a fetch), timed; the error
        for an interrupt it caused says why."""
        dl = self.deadline
        t0 = stmt.started = monotonic()
        if dl is not None:
            dl.arm(stmt, t0 + self.limit - stmt.spent, t0)  # type: ignore[operator]
        try:
            return fn(*args)
        except Exception as exc:
            if dl is not None and dl.disarm(stmt) and interrupted(exc):
                raise exceeded(exc, self.limit) from exc  # type: ignore[arg-type]
            raise
        finally:
            if dl is not None:
                dl.disarm(stmt)
            stmt.started = None
            stmt.add(monotonic() - t0)

    def run(self, cursor: Any, method: Callable[..., _T], sql: Any, *args: Any) -> _T:
        """Run ``method(cursor, sql, *args)`` (the cursor's own execute...) as one statement."""
        if isinstance(cursor, TimedFetch):  # the timed fetches of its last SELECT
            cursor.__class__ = cursor._local_class  # type: ignore[assignment]
        stmt = cursor._stmt = Statement(self, sql)
        cursor._clocked = True
        try:
            result = self.call(stmt, method, cursor, sql, *args)
        finally:
            cursor._clocked = False
        if cursor.description is not None and "_remote" not in cursor.__dict__:
            cursor.__class__ = timed_class(type(cursor))  # its fetches still run the statement
        return result


class Statement:
    """One statement's time inside its calls so far, and where it ran."""

    __slots__ = ("clock", "sql", "spent", "started", "where", "logged", "__weakref__")

    def __init__(self, clock: Clock, sql: str) -> None:
        self.clock = clock
        self.sql = sql
        self.spent = 0.0  # seconds in its calls that ended
        self.started: float | None = None  # when the call now running began
        self.where = _HERE
        self.logged = False

    def runs_on(self, pid: int) -> None:
        """The statement runs on worker ``pid``, which keeps its deadline: interrupting this
        process would not stop it."""
        self.where = f"on worker process {pid}"
        dl = self.clock.deadline
        if dl is not None:
            dl.disarm(self)

    def runs_here(self) -> None:
        """The worker refused the statement: it runs in this process after all."""
        self.where = _HERE
        dl, limit, started = self.clock.deadline, self.clock.limit, self.started
        if dl is not None and started is not None:
            dl.arm(self, started + limit - self.spent, monotonic())  # type: ignore[operator]

    def budget(self) -> tuple[float, float] | None:
        """``(statement_timeout, seconds left)`` for a worker, or None without a limit."""
        limit = self.clock.limit
        if limit is None:
            return None
        started = self.started
        return limit, limit - self.spent - (0.0 if started is None else monotonic() - started)

    def add(self, elapsed: float) -> None:
        """Count ``elapsed`` seconds of this statement; log it once it has run too long."""
        self.spent += elapsed
        slow = self.clock.slow
        if slow is not None and not self.logged and self.spent >= slow:
            self.logged = True
            sql = " ".join(str(self.sql).split())
            if len(sql) > SQL_LOG_CHARS:
                sql = sql[:SQL_LOG_CHARS] + "..."
            log.warning("slow statement: %.3f s %s (database %s): %s", self.spent, self.where,
                        self.clock.name, sql)


class TimedFetch:
    """Fetch methods that time a SELECT still running in this process.

    Mixed into a subclass of the cursor's own class, which the cursor takes on
    after such a statement, until its rows are read or it runs another."""

    __slots__ = ()
    _local_class: type[sqlite3.Cursor]
    _stmt: Statement

    def _fetch(self, fn: Callable[..., _T], *args: Any) -> _T:
        stmt = self._stmt
        try:
            rows = stmt.clock.call(stmt, fn, self, *args)
        except BaseException:  # it failed, or StopIteration: the statement is over
            self.__class__ = self._local_class  # type: ignore[assignment]
            raise
        if not rows:
            self.__class__ = self._local_class  # type: ignore[assignment]
        return rows

    def fetchone(self) -> Any:
        return self._fetch(self._local_class.fetchone)

    def __next__(self) -> Any:
        return self._fetch(self._local_class.__next__)

    def fetchmany(self, size: int | None = None) -> list[Any]:
        if size is None:
            return self._fetch(self._local_class.fetchmany)
        return self._fetch(self._local_class.fetchmany, size)

    def fetchall(self) -> list[Any]:
        local = self._local_class
        rows = self._fetch(local.fetchall)
        self.__class__ = local  # type: ignore[assignment]
        return rows


_variants: dict[type, type] = {}


def timed_class(cls: type) -> type:
    """The timed variant of cursor class ``cls``."""
    variant = _variants.get(cls)
    if variant is None:
        variant = _variants[cls] = type(cls.__name__, (TimedFetch, cls), {
            "__slots__": (), "__qualname__": cls.__qualname__, "__module__": cls.__module__,
            "_local_class": cls,
        })
    return variant

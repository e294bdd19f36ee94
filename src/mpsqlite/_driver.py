"""Another DB-API driver in place of sqlite3: ``mpsqlite.connect(db, driver="module")``.

The connection's own handle is that module's connection, in the calling
process; mpsqlite adds its writer gate (per driver and database argument)
and offload of reads that return many rows to worker processes running the
same driver. Group commit does not apply: mpsqlite cannot know how another
driver makes commits durable. The driver's own exception classes arrive
unchanged; mpsqlite's own errors (a worker that died, the writer gate's
``database is locked``) are raised as subclasses of both their sqlite3 class
and the driver's ``OperationalError``, so the application's handlers for the
driver catch them. A transaction is taken to begin at the first statement
that may write, which is when most drivers open one implicitly.

Every write and every commit runs on the driver's connection in the calling
process; workers only read. A worker that dies therefore costs a read, never
leaves a commit in doubt.
"""

from __future__ import annotations

import functools
import importlib
import os
import sqlite3
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from . import _later, _offload
from . import _wire as w
from ._database import let_go, registry
from ._sql import Kind, kind
from ._timeout import Clock, Statement, check_seconds, interrupter

_ids = iter(range(1, 1 << 62))
_F = TypeVar("_F", bound=Callable[..., Any])
_classes: dict[tuple[type, type], type] = {}


def _for_driver(exc: sqlite3.Error, driver: Any) -> BaseException:
    """mpsqlite's own error ``exc`` as an instance of the driver's OperationalError too."""
    own, base = getattr(driver, "Error", None), getattr(driver, "OperationalError", None)
    if isinstance(own, type) and isinstance(exc, own):
        return exc  # the driver's own (a driver may use sqlite3's classes)
    if not isinstance(base, type) or not issubclass(base, BaseException):
        return exc
    cls = _classes.get((type(exc), base))
    if cls is None:
        try:
            cls = type(type(exc).__name__, (type(exc), base), {"__module__": __name__})
        except TypeError:  # the driver's class has a C layout of its own
            cls = base
        _classes[(type(exc), base)] = cls
    try:
        err: BaseException = cls.__new__(cls, *exc.args)
        BaseException.__init__(err, *exc.args)
        err.__dict__.update(getattr(exc, "__dict__", {}))
    except Exception:
        return exc
    return err


def _driver_errors(method: _F) -> _F:
    """Raise mpsqlite's own errors from ``method`` as the driver's OperationalError too."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            err = _for_driver(exc, self.connection.driver)
            if err is exc:
                raise
            try:
                raise err.with_traceback(exc.__traceback__) from None
            finally:
                del err  # no reference cycle through this frame

    return wrapper  # type: ignore[return-value]


class DriverConnection:
    """A PEP 249 connection of another driver, with mpsqlite's writer gate and offload."""

    def __init__(
        self, database: Any, driver: str, *, timeout: float = 5.0,
        driver_kwargs: dict[str, Any] | None = None, workers: int | None = None,
        offload: bool = True, max_write_seconds: float | None = 30.0,
        statement_timeout: float | None = None, log_slow_statements: float | None = None,
    ) -> None:
        _later.run()
        limit = check_seconds("statement_timeout", statement_timeout)
        slow = check_seconds("log_slow_statements", log_slow_statements)
        self.driver = importlib.import_module(driver)
        for name in ("Error", "Warning", "InterfaceError", "DatabaseError", "DataError",
                     "OperationalError", "IntegrityError", "InternalError",
                     "ProgrammingError", "NotSupportedError"):
            if hasattr(self.driver, name):
                setattr(self, name, getattr(self.driver, name))
        kwargs = dict(driver_kwargs or {})
        target = os.fsdecode(database) if isinstance(database, (bytes, os.PathLike)) else database
        if isinstance(target, str) and os.path.exists(target):
            target = os.path.abspath(target)
        self._con = self.driver.connect(target, **kwargs)
        self._clock: Clock | None = None
        if limit is not None and not callable(getattr(self._con, "interrupt", None)):
            self._con.close()
            raise _for_driver(sqlite3.NotSupportedError(
                f"statement_timeout needs a connection that can be interrupted, and {driver}'s "
                "connections have no interrupt()"), self.driver)
        if limit is not None or slow is not None:
            self._clock = Clock(interrupter(self, _interrupt_driver), limit, slow, str(target))
        self._args = ((target,), kwargs)
        self._timeout = float(timeout)
        self._max_write = max_write_seconds
        self._offload = offload
        self._key = next(_ids)
        self._gate_held = False
        self._closed = False
        self._db = registry.acquire(
            ("driver", driver, repr(target), repr(sorted(kwargs.items()))), str(target),
            workers, driver)

    @property
    def in_transaction(self) -> bool:
        return self._gate_held

    def cursor(self) -> DriverCursor:
        return DriverCursor(self)

    def execute(self, sql: str, parameters: Any = None) -> DriverCursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> DriverCursor:
        return self.cursor().executemany(sql, seq_of_parameters)

    def _before(self, k: Kind) -> None:
        if k is not Kind.READ and k is not Kind.EMPTY and not self._gate_held:
            self._db.gate.acquire(self, self._timeout)
            self._gate_held = True

    def _after(self, k: Kind) -> None:
        if k is Kind.COMMIT or k is Kind.ROLLBACK:
            self._end()

    def _end(self) -> None:
        if self._gate_held:
            self._gate_held = False
            self._db.gate.release(self)

    def commit(self) -> None:
        """Commit on the driver's connection, here; a commit that failed keeps the writer
        gate only while the driver says (``in_transaction``) that its transaction is open."""
        try:
            self._con.commit()
        except BaseException:
            if getattr(self._con, "in_transaction", None) is not True:
                self._end()
            raise
        self._end()

    def rollback(self) -> None:
        try:
            self._con.rollback()
        finally:
            self._end()

    def _refuse_offload(self, why: str) -> None:
        self._offload = False

    def _revoke_write(self, held: float) -> None:
        """Another driver's connection cannot be rolled back from another thread safely."""

    def pool_status(self) -> dict[str, Any]:
        _later.run()
        return self._db.status()

    def close(self) -> None:
        _later.run()
        if self._closed:
            return
        self._closed = True
        try:
            self._con.close()
        finally:
            self._end()
            let_go(self._db, self._key, None)

    def __enter__(self) -> DriverConnection:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                _later.soon(self.close)
            except Exception:
                pass


def _interrupt_driver(con: DriverConnection) -> None:
    con._con.interrupt()


class DriverCursor:
    """A cursor of a :class:`DriverConnection`: the driver's cursor, or a worker's result."""

    def __init__(self, connection: DriverConnection) -> None:
        self.connection = connection
        self._cur = connection._con.cursor()
        self.arraysize = 1
        self._remote: _offload.Remote | None = None
        self._stmt: Statement | None = None  # the last statement, timed by the connection
        self._description: Any = None
        self._judge: str | None = None
        self._seen = 0

    @property
    def description(self) -> Any:
        return self._description if self._remote is not None else self._cur.description

    @property
    def rowcount(self) -> int:
        return -1 if self._remote is not None else self._cur.rowcount

    @property
    def lastrowid(self) -> Any:
        return getattr(self._cur, "lastrowid", None)

    def _reset(self) -> None:
        r, self._remote = self._remote, None
        if r is not None:
            if r.finalizer is not None:
                r.finalizer.detach()
            r.end()

    @_driver_errors
    def execute(self, sql: str, parameters: Any = None) -> DriverCursor:
        self._reset()
        clock = self.connection._clock
        if clock is None:
            return self._execute(sql, parameters)
        self._stmt = stmt = Statement(clock, sql)
        return clock.call(stmt, self._execute, sql, parameters)

    def _execute(self, sql: str, parameters: Any) -> DriverCursor:
        con = self.connection
        k = kind(sql)
        if k is Kind.READ and not con._gate_held:
            db = con._db
            if con._offload and sql in db.heavy and self._run_remote(sql, parameters):
                return self
            self._judge, self._seen = sql, 0
            db.local_statements += 1
        else:
            self._judge = None
            con._before(k)
        if parameters is None:
            self._cur.execute(sql)
        else:
            self._cur.execute(sql, parameters)
        con._after(k)
        return self

    @_driver_errors
    def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> DriverCursor:
        self._reset()
        self._judge = None
        k = kind(sql)
        clock = self.connection._clock
        if clock is None:
            self.connection._before(k)
            self._cur.executemany(sql, seq_of_parameters)
            return self
        self._stmt = stmt = Statement(clock, sql)
        clock.call(stmt, self._executemany, k, sql, seq_of_parameters)
        return self

    def _executemany(self, k: Kind, sql: str, seq_of_parameters: Iterable[Any]) -> None:
        self.connection._before(k)
        self._cur.executemany(sql, seq_of_parameters)

    def _run_remote(self, sql: str, params: Any) -> bool:
        if params is not None and not _offload.plain_params(params):
            return False
        con = self.connection
        ran = _offload.run_on_worker(con._db, con, con._key, 0, w.settings(con._args, []), sql,
                                     params, None, self._stmt)
        if ran is None:
            return False
        self._description, self._remote = ran
        if self._remote.handle is not None:
            self._remote.finalizer = weakref.finalize(self, _later.soon, self._remote.end)
        return True

    def _note(self, rows: list[Any], done: bool) -> list[Any]:
        if self._judge is not None:
            self._seen += len(rows)
            if self._seen >= _offload.HEAVY_ROWS:
                self.connection._db.judge(self._judge, True)
                self._judge = None
            elif done:
                self._judge = None
        return rows

    def _local(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A fetch from the driver's cursor: part of the statement, for its timing."""
        stmt = self._stmt
        return fn(*args) if stmt is None else stmt.clock.call(stmt, fn, *args)

    @_driver_errors
    def fetchone(self) -> Any:
        r = self._remote
        if r is None:
            return self._local(self._cur.fetchone)
        if not r.rows and not r.fill():
            return None
        return r.rows.popleft()

    @_driver_errors
    def fetchmany(self, size: int | None = None) -> list[Any]:
        n = self.arraysize if size is None else size
        r = self._remote
        if r is None:
            rows = self._local(self._cur.fetchmany, n)
            return self._note(rows, len(rows) < n)
        return r.take(n)

    @_driver_errors
    def fetchall(self) -> list[Any]:
        r = self._remote
        if r is None:
            return self._note(self._local(self._cur.fetchall), True)
        return r.take_all()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchone, None)

    def close(self) -> None:
        self._reset()
        self._cur.close()

    def setinputsizes(self, sizes: Any) -> None:
        """Accepted and ignored, as PEP 249 allows."""

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        """Accepted and ignored, as PEP 249 allows."""

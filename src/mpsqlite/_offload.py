"""Offload: a read that proves GIL-heavy runs on a worker process instead of the caller.

Every statement first runs in the calling process, on the connection's own
SQLite connection. A read outside a transaction is judged by what it cost
there: one that returned many rows (rows are built under the GIL) or that
called the connection's Python functions for long is remembered, per
database, and from then on runs on a worker that holds an equivalent
connection. A worker run that turns out cheap sends the statement back.

Nothing moves that could be seen: not statements inside a transaction, nor
those of a connection with TEMP objects, in-memory attachments, callbacks
(trace, authorizer, progress), converters (``detect_types``), another
``text_factory``, a cursor class with its own fetch methods, or parameters
that are not plain SQLite values.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from . import _later
from . import _wire as w
from ._timeout import KILL_GRACE
from ._workers import WorkerDied, WorkerHandle, WorkerKilled

if TYPE_CHECKING:
    from ._database import Database
    from ._timeout import Statement
    from .connection import Connection

#: Rows a result must reach, fetched with fetchall/fetchmany, to be sent to a worker next time.
HEAVY_ROWS = 1000
#: Thread CPU seconds a statement calling the connection's Python functions must take.
HEAVY_CPU = 0.002
#: How long a heavy read waits for a free worker before it runs in the caller anyway.
LEASE_WAIT = 5.0

_PLAIN = (int, float, str, bytes, type(None))
# sqlite3's own checks, called on RemoteFetch variants (subclasses of a sqlite3 cursor class)
_fetchone: Callable[[Any], Any] = sqlite3.Cursor.fetchone
_fetchmany = sqlite3.Cursor.fetchmany
_fetchall = sqlite3.Cursor.fetchall
_execute = sqlite3.Cursor.execute
#: Reads the schema (a read transaction on the main database) and stops part-way.
_HOLD_SQL = "SELECT count(*) FROM sqlite_schema UNION ALL SELECT 0"


def plain_params(params: Any) -> bool:
    """Whether ``params`` holds only values that need no adapter (marshal carries them)."""
    if isinstance(params, (tuple, list)):
        values: Any = params
    elif isinstance(params, dict):
        if not all(type(k) is str for k in params):
            return False
        values = params.values()
    else:
        return False
    return all(type(v) in _PLAIN for v in values)


def _describe_sql(description: tuple[Any, ...]) -> str:
    """A statement with no rows whose description matches ``description``.

    Run on the caller's own cursor, it gives sqlite3's C cursor the right
    column names (``sqlite3.Row`` reads them there) and an exhausted result.
    """
    cols = ", ".join('NULL AS "' + d[0].replace('"', '""') + '"' for d in description)
    return f"SELECT {cols} WHERE 0"


def _ask(h: WorkerHandle, stmt: Statement | None, request: Any, con: Any = None) -> Any:
    """One exchange for a statement, bounded by its statement_timeout.

    ``request(timeout)`` builds the request. A worker that has not answered
    KILL_GRACE seconds after the deadline is killed: what it runs did not stop."""
    budget = None if stmt is None else stmt.budget()
    if budget is None:
        return h.exchange(request(None), con)
    try:
        return h.exchange(request(budget), con, max(budget[1], 0.0) + KILL_GRACE)
    except WorkerKilled as exc:
        raise sqlite3.OperationalError(
            f"statement exceeded statement_timeout={budget[0]:g} s and did not stop when "
            f"interrupted (a Python function that does not return?): {exc}; a new worker "
            "starts when needed") from None


class Remote:
    """A result held by a worker: rows received so far and the lease for the rest."""

    __slots__ = ("rows", "pool", "handle", "finalizer", "row_factory", "stmt", "hold",
                 "__weakref__")

    def __init__(self, rows: list[Any], pool: Any, handle: WorkerHandle | None,
                 row_factory: Any, stmt: Statement | None = None) -> None:
        self.rows = deque(rows)
        self.pool = pool
        self.handle = handle  # set while rows remain in the worker
        self.row_factory = row_factory
        self.stmt = stmt  # timing of the statement, on a connection with a Clock
        self.finalizer: weakref.finalize[..., Any] | None = None  # on the cursor it serves
        # A statement of the caller's connection kept part-way while rows remain, so that
        # its later statements share one snapshot with this read, as in sqlite3 (a cursor
        # dropped here from any thread resets its statement).
        self.hold: sqlite3.Cursor | None = None

    def fill(self) -> bool:
        """Fetch the next chunk; False when the result is exhausted."""
        h = self.handle
        if h is None:
            return False
        stmt = self.stmt
        t0 = monotonic()
        try:
            status, payload = _ask(h, stmt, w.fetch_request)
        except BaseException:
            self.handle = None
            self.pool.release(h)
            raise
        finally:
            if stmt is not None:
                stmt.add(monotonic() - t0)
        if status != w.OK:
            self.end()
            exc, payload = payload, None
            try:
                raise exc
            finally:
                del exc  # else this frame, in the traceback, holds it: a reference cycle
        rows, more = w.read_fetch_result(payload)
        self.rows.extend(rows)
        if not more:
            self.handle = None
            self.pool.release(h)
        return bool(rows)

    def take(self, n: int) -> list[Any]:
        """Up to ``n`` rows, fetching chunks as needed."""
        out: list[Any] = []
        while len(out) < n:
            if not self.rows and not self.fill():
                break
            take = min(n - len(out), len(self.rows))
            out.extend(self.rows.popleft() for _ in range(take))
        if not self.rows and self.handle is None:
            self.hold = None
        return out

    def take_all(self) -> list[Any]:
        """Every remaining row."""
        out = list(self.rows)
        self.rows.clear()
        while self.handle is not None:
            self.fill()
            out.extend(self.rows)
            self.rows.clear()
        self.hold = None
        return out

    def end(self) -> None:
        """Give the worker back, telling it to drop what it still holds."""
        self.hold = None
        h, self.handle = self.handle, None
        if h is not None:
            _drop(self.pool, h)


def _drop(pool: Any, h: WorkerHandle) -> None:
    h.send_only(w.drop_request())
    pool.release(h)


class RemoteFetch:
    """The fetch methods of a cursor whose result a worker holds.

    Mixed into a subclass of the cursor's own class, which the cursor takes
    on only while it serves a remote result; the first call of ``execute``,
    ``executemany`` or ``close`` puts the class back.
    """

    __slots__ = ()
    _remote: Remote
    _local_class: type

    def _make(self, row: tuple[Any, ...]) -> Any:
        factory = self._remote.row_factory
        return row if factory is None else factory(self, row)

    def fetchone(self) -> Any:
        _fetchone(self)  # sqlite3's own checks: closed cursor or connection, thread
        r = self._remote
        if not r.rows and not r.fill():
            r.hold = None
            return None
        row = r.rows.popleft()
        if not r.rows and r.handle is None:
            r.hold = None
        return self._make(row)

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def fetchmany(self, size: int | None = None) -> list[Any]:
        _fetchone(self)
        n = getattr(self, "arraysize", 1) if size is None else size
        if n <= 0:
            return self.fetchall()
        r = self._remote
        out = r.take(n)
        return out if r.row_factory is None else [self._make(x) for x in out]

    def fetchall(self) -> list[Any]:
        _fetchone(self)
        r = self._remote
        out = r.take_all()
        return out if r.row_factory is None else [self._make(x) for x in out]

    def _back_to_local(self) -> None:
        r = self._remote
        if r.finalizer is not None:
            r.finalizer.detach()
        r.end()
        self.__class__ = self._local_class
        del self._remote

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._back_to_local()
        return self.execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        self._back_to_local()
        return self.executemany(*args, **kwargs)

    def executescript(self, *args: Any, **kwargs: Any) -> Any:
        """sqlite3's executescript leaves the cursor's result being read: so does this."""
        local: Any = self._local_class
        return local.executescript(self, *args, **kwargs)

    def close(self) -> None:
        self._back_to_local()
        self.close()


_variants: dict[type, type] = {}
_FETCH_NAMES = ("fetchone", "fetchmany", "fetchall", "__next__", "__iter__")


def remote_class(cls: type) -> type | None:
    """The remote variant of cursor class ``cls``, or None if ``cls`` fetches its own way."""
    variant = _variants.get(cls)
    if variant is None:
        from .cursor import Cursor

        if any(getattr(cls, n) is not getattr(Cursor, n) for n in _FETCH_NAMES):
            return None
        variant = type(cls.__name__, (RemoteFetch, cls), {
            "__slots__": (), "__qualname__": cls.__qualname__, "__module__": cls.__module__,
            "_local_class": cls,
        })
        _variants[cls] = variant
    return variant


def run_remote(cursor: Any, con: Connection, db: Database, sql: str, params: Any) -> bool:
    """Run ``sql`` on a worker for ``cursor``; False (nothing done) where it cannot move."""
    variant = remote_class(type(cursor))
    if variant is None or not plain_params(params):
        return False
    settings = con._worker_settings()
    if settings is None:
        return False
    key, version, blob = settings
    hold = _execute(sqlite3.Cursor(con), _HOLD_SQL)  # before the worker takes its snapshot
    try:
        ran = run_on_worker(db, con, key, version, blob, sql, params, cursor.row_factory,
                            getattr(cursor, "_stmt", None) if con._clock is not None else None)
    except BaseException:
        hold.close()  # not left to the traceback, which may live on
        raise
    if ran is None:
        hold.close()
        return False
    description, remote = ran
    if remote.rows or remote.handle is not None:
        remote.hold = hold
    else:
        hold.close()
    if description is None:
        _execute(cursor, "SELECT 1 WHERE 0")
    else:
        _execute(cursor, _describe_sql(description))
    if remote.handle is not None:
        remote.finalizer = weakref.finalize(cursor, _later.soon, _end_remote, remote)
    cursor._remote = remote
    cursor.__class__ = variant
    return True


def run_on_worker(db: Any, con: Any, key: int, version: int, blob: w.Settings, sql: str,
                  params: Any, row_factory: Any, stmt: Statement | None = None
                  ) -> tuple[Any, Remote] | None:
    """Run a read for connection ``con`` on a worker: ``(description, Remote)``, or None
    where no worker could take it (none free in time, or it refused to stand in).
    ``stmt`` times the statement, for a connection with statement_timeout or
    log_slow_statements."""
    pool = db.pool()
    h = pool.lease(min(con._timeout, LEASE_WAIT))
    if h is None:
        return None
    if stmt is not None:
        stmt.runs_on(h.pid)
    try:
        reply = _ask(h, stmt, lambda timeout: w.exec_request(
            key, version, None if h.known.get(key) == version else blob, sql, params, timeout),
            con)
        if reply[0] == w.NEED_SETTINGS:
            reply = _ask(h, stmt, lambda timeout: w.exec_request(
                key, version, blob, sql, params, timeout), con)
    except WorkerDied:
        raise
    except BaseException:
        pool.release(h)
        raise
    status, payload = reply
    if status == w.REFUSED:
        pool.release(h)
        con._refuse_offload(payload)
        if stmt is not None:
            stmt.runs_here()
        return None
    h.known[key] = version
    if status == w.ERROR:
        pool.release(h)
        exc, payload, reply = payload, None, None
        try:
            raise exc
        finally:
            del exc  # else this frame, in the traceback, holds it: a reference cycle that
            # keeps the cursor, and a closed connection's write lock, until a collection
    description, rows, more, cpu = w.read_exec_result(payload)
    if not more:
        pool.release(h)
        if len(rows) < HEAVY_ROWS // 4 and cpu < HEAVY_CPU / 4:
            db.judge(sql, False)  # cheap after all (other parameters?): back to the caller
    db.offloaded += 1
    return description, Remote(rows, pool, h if more else None, row_factory, stmt)


def _end_remote(remote: Remote) -> None:
    remote.end()

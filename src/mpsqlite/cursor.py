"""The DB-API cursor: a view of one statement's result held by a worker.

``execute`` gets description, rowcount, lastrowid and the first rows in one
round trip. Rows beyond those stay in the worker, fetched in growing bounded
chunks; while they are pending the cursor keeps its lease on that worker.
"""

from __future__ import annotations

import itertools
import sqlite3
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .row import Row

if TYPE_CHECKING:
    from .connection import Connection
    from .pool import WorkerHandle

_ids = itertools.count(1)


def _drop_remote(pool: Any, worker: WorkerHandle, cid: int) -> None:
    """Forget a worker-side cursor (next request closes it) and end our lease."""
    worker.pending_close.append(cid)
    pool.release(worker)


class Cursor:
    """A PEP 249 cursor with sqlite3's behaviour, running in worker processes."""

    __slots__ = (
        "_connection", "_cid", "arraysize", "row_factory", "_description", "_rowcount",
        "_lastrowid", "_rows", "_remote", "_finalizer", "_executed", "_closed",
        "__weakref__",
    )

    def __init__(self, connection: Connection) -> None:
        if not getattr(connection, "_is_mpsqlite_connection", False):
            raise TypeError("Cursor() argument must be an mpsqlite Connection")
        self._connection = connection
        self._cid = next(_ids)
        self.arraysize = 1
        self.row_factory = connection.row_factory
        self._description: tuple | None = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._rows: deque = deque()
        self._remote: WorkerHandle | None = None
        self._finalizer: weakref.finalize | None = None
        self._executed = False
        self._closed = False

    # -- attributes -------------------------------------------------------

    @property
    def connection(self) -> Connection:
        return self._connection

    @property
    def description(self) -> tuple | None:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._lastrowid

    # -- execution --------------------------------------------------------

    def execute(self, sql: str, parameters: Any = None, /) -> Cursor:
        """Run one statement; results are read with the fetch methods."""
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed cursor.")
        if not isinstance(sql, str):
            raise TypeError(f"execute() argument 1 must be str, not {type(sql).__name__}")
        if self._executed:
            self._reset()
        reply, worker = self._connection._execute(self, sql, parameters, False)
        self._take(reply, worker)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor:
        """Run one DML statement for every parameter set, in a single message."""
        self._check()
        if not isinstance(sql, str):
            raise TypeError(f"executemany() argument 1 must be str, not {type(sql).__name__}")
        self._reset()
        lastrowid = self._lastrowid  # sqlite3 leaves it alone in executemany()
        reply, worker = self._connection._execute(self, sql, seq_of_parameters, True)
        self._take(reply, worker)
        self._lastrowid = lastrowid
        return self

    def executescript(self, sql_script: str, /) -> Cursor:
        """Run several statements; like sqlite3, commits a pending transaction first."""
        self._check()
        if not isinstance(sql_script, str):
            raise ValueError("script argument must be unicode.")
        self._reset()
        self._connection._executescript(sql_script)
        self._executed = True
        return self

    def _take(self, reply: tuple, worker: WorkerHandle | None) -> None:
        description, rowcount, lastrowid, rows, more, _, _ = reply
        self._executed = True
        self._description = description
        self._rowcount = rowcount
        self._lastrowid = lastrowid
        self._rows.extend(rows)
        if more and worker is not None:
            self._connection._cursors.add(self)
            self._remote = worker
            self._finalizer = weakref.finalize(
                self, _drop_remote, self._connection._pool, worker, self._cid
            )

    def _reset(self) -> None:
        if self._finalizer is not None:
            self._release_remote()
        self._rows.clear()
        self._description = None
        self._rowcount = -1

    def _release_remote(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._remote = None

    def _fill(self) -> bool:
        """Fetch the next chunk from the worker; False when the result is exhausted."""
        worker = self._remote
        if worker is None:
            return False
        try:
            rows, more, rowcount = self._connection._fetch(worker, self._cid, 0)
        except BaseException:
            self._release_remote()
            raise
        self._rows.extend(rows)
        if rowcount != -1:
            self._rowcount = rowcount
        if not more:
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
            self._remote = None
            self._connection._pool.release(worker)
        return bool(rows)

    # -- fetching ---------------------------------------------------------

    def _make(self, row: tuple) -> Any:
        factory = self.row_factory
        if factory is None:
            return row
        if factory is sqlite3.Row:
            factory = Row
        return factory(self, row)

    def _check_fetch(self) -> None:
        self._check()
        if not self._executed:
            raise sqlite3.ProgrammingError("no statement executed: call execute() before fetching")

    def fetchone(self) -> Any:
        """The next row, or None when there are no more."""
        con = self._connection
        if self._closed or not self._executed or con._closed or con._thread is not None:
            self._check_fetch()
        if not self._rows and not self._fill():
            return None
        if self.row_factory is None:
            return self._rows.popleft()
        return self._make(self._rows.popleft())

    def fetchmany(self, size: int | None = None) -> list[Any]:
        """Up to ``size`` rows (default ``arraysize``)."""
        self._check_fetch()
        n = self.arraysize if size is None else size
        if n <= 0:
            return self.fetchall()  # as sqlite3: a size of 0 or less means every row
        out: list = []
        rows = self._rows
        while len(out) < n:
            if not rows and not self._fill():
                break
            take = min(n - len(out), len(rows))
            out.extend(rows.popleft() for _ in range(take))
        return [self._make(r) for r in out] if self.row_factory is not None else out

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        self._check_fetch()
        out = list(self._rows)
        self._rows.clear()
        while self._remote is not None:
            self._fill()
            out.extend(self._rows)
            self._rows.clear()
        return [self._make(r) for r in out] if self.row_factory is not None else out

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        self._check()
        if not self._rows and not self._fill():
            raise StopIteration
        return self._make(self._rows.popleft())

    # -- the rest of PEP 249 ---------------------------------------------

    def close(self) -> None:
        """Close the cursor; its unread rows are dropped in the worker."""
        self._release_remote()
        self._connection._check()  # as sqlite3: not from another thread, not once closed
        self._rows.clear()
        self._closed = True

    def setinputsizes(self, sizes: Any, /) -> None:
        """Accepted and ignored, as PEP 249 allows."""

    def setoutputsize(self, size: Any, column: Any = None, /) -> None:
        """Accepted and ignored, as PEP 249 allows."""

    def nextset(self) -> None:
        """SQLite statements return one result set: always None."""
        self._check()
        return None

    def _check(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed cursor.")
        self._connection._check()

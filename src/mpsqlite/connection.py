"""The DB-API connection: sqlite3's transaction rules over a pool of workers.

A connection is a cheap view of its database's pool. Outside a transaction a
read runs on any idle worker, so threads sharing a connection read in
parallel. A statement that may write first takes the pool's writer gate;
if it leaves a transaction open (sqlite3's implicit BEGIN before DML, an
explicit BEGIN), the connection keeps that worker and the gate until COMMIT
or ROLLBACK, so the whole transaction runs on one worker.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from . import protocol as p
from .adapt import adapt_many, adapt_params
from .admin import WholeDatabaseMixin
from .callbacks import CallbacksMixin
from .classify import (
    Kind,
    attached_schema,
    classify,
    creates_temp,
    first_word,
    is_dml,
    pragma_assignment,
)
from .cursor import Cursor
from .pool import WorkerDied, WorkerHandle
from .registry import dumps_callable, get_pool, put_pool
from .settings import LEGACY_TRANSACTION_CONTROL, PoolSettings

_LEVELS = ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE")
# sqlite3 checks the thread and the open state when isolation_level is set from 3.11 on.
_CHECKED_ISOLATION_SETTER = sys.version_info >= (3, 11)
_SYNC_DESCRIPTION = (("synchronous", None, None, None, None, None, None),)
_NOTHING = (None, -1, None, [], False, False, 0)  # the reply of a statement with no result


class Connection(CallbacksMixin, WholeDatabaseMixin):
    """A PEP 249 connection with sqlite3's API; statements run in worker processes."""

    Warning = sqlite3.Warning
    Error = sqlite3.Error
    InterfaceError = sqlite3.InterfaceError
    DatabaseError = sqlite3.DatabaseError
    DataError = sqlite3.DataError
    OperationalError = sqlite3.OperationalError
    IntegrityError = sqlite3.IntegrityError
    InternalError = sqlite3.InternalError
    ProgrammingError = sqlite3.ProgrammingError
    NotSupportedError = sqlite3.NotSupportedError
    _is_mpsqlite_connection = True

    def __init__(
        self,
        database: str | bytes | os.PathLike[str],
        timeout: float = 5.0,
        detect_types: int = 0,
        isolation_level: str | None = "",
        check_same_thread: bool = False,
        factory: Any = None,
        cached_statements: int = 128,
        uri: bool = False,
        *,
        autocommit: bool | int = LEGACY_TRANSACTION_CONTROL,
        workers: int | None = None,
        wal: bool = True,
        max_write_seconds: float | None = 30.0,
        local_reads: bool = True,
        group_commit: bool = True,
        driver: str = "sqlite3",
        driver_kwargs: dict[str, Any] | None = None,
    ) -> None:
        settings = PoolSettings.build(
            database, timeout, detect_types, cached_statements, uri, workers, wal,
            max_write_seconds, local_reads, group_commit, driver, driver_kwargs,
        )
        self._timeout = float(timeout)
        self._lock = threading.RLock()
        self._txn: WorkerHandle | None = None
        self._revoked: str | None = None
        self._closed = False
        self._thread = threading.get_ident() if check_same_thread else None
        self._isolation_level: str | None = None
        self.isolation_level = isolation_level
        self._autocommit: bool | int = LEGACY_TRANSACTION_CONTROL
        self._set_autocommit_value(autocommit)
        self.row_factory: Any = None
        self._text_factory: Any = str
        self._tf_key = 0
        self._total_changes = 0
        self._cursors: weakref.WeakSet[Cursor] = weakref.WeakSet()
        self._pool = get_pool(settings.key, settings.make_pool)

    # -- statement execution (called by Cursor) ---------------------------

    def _execute(self, cursor: Cursor, sql: str, params: Any, many: bool) -> tuple:
        """Run one statement; returns the reply and the worker if rows remain there."""
        if self._closed or self._thread is not None:
            self._check()
        params = adapt_many(params) if many else adapt_params(params)
        kind = classify(sql)
        if (
            kind is Kind.READ
            and self._txn is None
            and self._revoked is None
            and self._autocommit is not False
        ):
            # The common case, without the connection lock: a read outside a
            # transaction needs no state of ours.
            local = self._pool.local
            if self._pool.closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            if local is not None and not many and not local.disabled and sql not in local.heavy:
                reply = local.run(self, sql, params, self._text_factory)
                if reply is not None:
                    return reply, None
            return self._run_reader((cursor._cid, sql, params, many))
        if kind is Kind.CONFIG:
            return self._execute_config(cursor, sql, params)
        if kind is Kind.SYNC_QUERY:
            sync = self._pool.sync
            if sync is not None:  # the workers run at NORMAL; the durability is ours
                return (_SYNC_DESCRIPTION, -1, None, [(sync.level,)], False, False, 0), None
            kind = Kind.READ
        return self._execute_locked((cursor._cid, sql, params, many), kind)

    def _execute_config(self, cursor: Cursor, sql: str, params: Any) -> tuple:
        """A pool-wide setting: run it here once, then record it for every worker.

        The same setting made again (each new connection of an application
        tends to) is recorded once, and not run again.
        """
        sql = self._pool.config_sql(sql)
        assignment = pragma_assignment(sql)
        schema = None if assignment else attached_schema(sql)
        if assignment:
            key: tuple = ("pragma", assignment[0])
        elif schema is not None:
            key = ("attach", schema)  # ATTACH and DETACH of one name replace each other
        else:
            key = ("sql", sql)
        entry = (p.SETUP_SQL, None, sql if params is None else (sql, params))
        if params is None and self._pool.is_current(key, entry):
            return _NOTHING, None
        result = self._execute_locked((cursor._cid, sql, params, False), Kind.READ)
        self._pool.add_setup(entry, key)
        return result

    def _execute_locked(self, args: tuple, kind: Kind) -> tuple:
        sql = args[1]
        if kind is Kind.WRITE and self._pool.local is not None and creates_temp(sql):
            # TEMP objects exist in one worker's connection, never in the
            # caller's read-only ones: from now on every read goes to a worker.
            self._pool.local.disabled = True
        with self._lock:
            if self._revoked is not None and kind is Kind.END:
                # ROLLBACK in SQL acknowledges a lost transaction as rollback() does.
                self._settle_revoked(rolling_back=first_word(sql) == "ROLLBACK")
                if self._txn is None:
                    return _NOTHING, None
            self._raise_if_revoked()
            if self._txn is not None:
                return self._run_pinned(args, None)
            begin = None
            if self._autocommit is False:
                begin = "BEGIN"
            elif (
                self._autocommit is LEGACY_TRANSACTION_CONTROL
                and self._isolation_level is not None
                and is_dml(sql)
            ):
                begin = "BEGIN " + self._isolation_level
            if self._pool.driver != "sqlite3" and kind is not Kind.END:
                begin = ""  # the driver opens a transaction itself; the worker notes it
            if begin is not None or kind is Kind.WRITE or kind is Kind.BEGIN:
                return self._run_writer(args, begin)
        return self._run_reader(args)

    def _exec(self, w: WorkerHandle, args: tuple, begin: str | None) -> tuple:
        reply = w.exchange(
            p.OP_EXEC, *args, begin, self._tf_key, p.FIRST_ROWS, owner=self
        )
        self._total_changes += reply[6]
        return reply

    def _run_reader(self, args: tuple) -> tuple:
        pool = self._pool
        w = pool.acquire(self._timeout, self._own_workers)
        try:
            reply = self._exec(w, args, None)
        except BaseException:
            pool.release(w)
            raise
        if reply[4]:
            return reply, w
        pool.release(w)
        return reply, None

    def _run_writer(self, args: tuple, begin: str | None) -> tuple:
        pool = self._pool
        pool.gate.acquire(self, self._timeout)
        try:
            w = pool.acquire(self._timeout, self._own_workers)
        except BaseException:
            pool.gate.release(self)
            raise
        try:
            reply = self._exec(w, args, begin)
        except BaseException:
            self._settle(w, pinned=False)
            raise
        more = reply[4]
        if w.in_txn:
            self._txn = w
            if more:
                pool.share(w)
            return reply, (w if more else None)
        pool.gate.release(self)
        self._make_durable()
        if more:
            return reply, w
        pool.release(w)
        return reply, None

    def _run_pinned(self, args: tuple, begin: str | None) -> tuple:
        w = self._txn
        assert w is not None
        try:
            reply = self._exec(w, args, begin)
        except WorkerDied:
            self._lose(w)
            raise
        except BaseException:
            self._settle(w, pinned=True)
            raise
        more = reply[4]
        if more:
            self._pool.share(w)
        if not w.in_txn:
            self._unpin()
            if first_word(args[1]) != "ROLLBACK":
                self._make_durable()
        return reply, (w if more else None)

    def _settle(self, w: WorkerHandle, pinned: bool) -> None:
        """After a failed statement: keep the worker only if a transaction is open."""
        if w.dead:
            if pinned:
                self._lose(w)
            else:
                self._pool.gate.release(self)
                self._pool.release(w)
            return
        if w.in_txn:
            self._txn = w
        elif pinned:
            self._unpin()
        else:
            self._pool.gate.release(self)
            self._pool.release(w)

    def _make_durable(self) -> None:
        """Wait for the group fsync that covers our commit (writer gate released)."""
        sync = self._pool.sync
        if sync is not None:
            sync.wait_durable()

    def _unpin(self) -> None:
        w, self._txn = self._txn, None
        self._pool.gate.release(self)
        if w is not None:
            self._pool.release(w)

    def _lose(self, w: WorkerHandle) -> None:
        """The pinned worker died: its transaction is gone, and the caller is told."""
        self._unpin()
        self._revoked = (
            f"the transaction was lost when mpsqlite worker process {w.pid} died; nothing of it "
            "was committed. Call rollback() before going on"
        )

    def _fetch(self, w: WorkerHandle, cid: int, n: int) -> tuple:
        try:
            return w.exchange(p.OP_FETCH, cid, n, owner=self)
        except WorkerDied:
            with self._lock:
                if self._txn is w:
                    self._lose(w)
            raise

    def _own_workers(self) -> list[WorkerHandle]:
        """Workers this connection's cursors hold already: shared rather than waited for.

        Without this a connection whose open cursor holds the only free worker
        would wait for itself.
        """
        held = [c._remote for c in list(self._cursors) if c._remote is not None]
        if self._txn is not None:
            held.append(self._txn)
        return held

    def _executescript(self, script: str) -> None:
        self._check()
        commit_first = self._autocommit is LEGACY_TRANSACTION_CONTROL
        with self._lock:
            self._raise_if_revoked()
            pinned = self._txn is not None
            if pinned:
                w = self._txn
            else:
                self._pool.gate.acquire(self, self._timeout)
                try:
                    w = self._pool.acquire(self._timeout, self._own_workers)
                except BaseException:
                    self._pool.gate.release(self)
                    raise
            try:
                _, changes = w.exchange(p.OP_SCRIPT, script, commit_first, owner=self)
            except WorkerDied:
                if pinned:
                    self._lose(w)
                else:
                    self._pool.gate.release(self)
                    self._pool.release(w)
                raise
            except BaseException:
                self._settle(w, pinned)
                raise
            self._total_changes += changes
            self._settle(w, pinned)
            if self._txn is None:
                self._make_durable()

    def _call(self, name: str, *args: Any) -> Any:
        """Run a worker-side helper on this connection's worker (or any idle one)."""
        self._check()
        with self._lock:
            if self._txn is not None:
                return self._txn.exchange(p.OP_CALL, name, args, owner=self)
        w = self._pool.acquire(self._timeout, self._own_workers)
        try:
            return w.exchange(p.OP_CALL, name, args, owner=self)
        finally:
            self._pool.release(w)

    # -- transactions -----------------------------------------------------

    def commit(self) -> None:
        """Commit the open transaction, if any; no round trip when there is none."""
        self._end("commit")

    def rollback(self) -> None:
        """Roll back the open transaction, if any; no round trip when there is none."""
        self._end("rollback")

    def _end(self, how: str) -> None:
        self._check()
        with self._lock:
            # Whatever the autocommit mode, rollback() acknowledges a lost or
            # revoked transaction and commit() reports it.
            self._settle_revoked(rolling_back=how == "rollback")
            if self._autocommit is True:
                return
            w = self._txn
            if w is None:
                return
            try:
                _, changes = w.exchange(p.OP_END, how, owner=self)
            except WorkerDied:
                self._unpin()
                if how == "rollback":
                    return  # the worker's death rolled it back: what was asked
                raise
            finally:
                if self._txn is w and not w.in_txn:
                    self._unpin()
            self._total_changes += changes
            if how == "commit":
                self._make_durable()

    def _settle_revoked(self, rolling_back: bool) -> None:
        """End the refusal left by a lost transaction; only a rollback ends it quietly."""
        if self._revoked is not None:
            message, self._revoked = self._revoked, None
            if not rolling_back:
                raise sqlite3.OperationalError(message)

    def _raise_if_revoked(self) -> None:
        if self._revoked is not None:
            raise sqlite3.OperationalError(self._revoked)

    def _revoke_write(self, limit: float) -> None:
        """Called by a waiting writer: roll back our transaction if it sits idle."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            w = self._txn
            if w is None or w.busy:
                return
            try:
                w.exchange(p.OP_END, "rollback", owner=self)
            except sqlite3.Error:
                pass
            self._unpin()
            self._revoked = (
                f"the transaction was rolled back: it held the database's writer slot for more "
                f"than max_write_seconds={limit:g} while other writers waited"
            )
        finally:
            self._lock.release()

    @property
    def in_transaction(self) -> bool:
        self._check_open()
        if self._autocommit is False and not self._closed:
            return True
        w = self._txn
        return w is not None and w.in_txn

    @property
    def isolation_level(self) -> str | None:
        return self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        if _CHECKED_ISOLATION_SETTER:
            self._check()
        if value is not None:
            if not isinstance(value, str):
                raise TypeError("isolation_level must be str or None")
            if value.upper() not in _LEVELS:
                raise ValueError(
                    "isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', or 'EXCLUSIVE'"
                )
            value = value.upper()
        elif getattr(self, "_txn", None) is not None:
            self.commit()
        self._isolation_level = value

    @property
    def autocommit(self) -> bool | int:
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool | int) -> None:
        self._check()
        if value is True and self._txn is not None:
            self.commit()
        self._set_autocommit_value(value)

    def _set_autocommit_value(self, value: Any) -> None:
        if value is not True and value is not False and value != LEGACY_TRANSACTION_CONTROL:
            raise ValueError(
                "autocommit must be True, False, or sqlite3.LEGACY_TRANSACTION_CONTROL"
            )
        self._autocommit = value if isinstance(value, bool) else LEGACY_TRANSACTION_CONTROL

    @property
    def total_changes(self) -> int:
        if self._closed:  # as sqlite3: readable from any thread, not once closed
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self._total_changes

    @property
    def text_factory(self) -> Any:
        return self._text_factory

    @text_factory.setter
    def text_factory(self, factory: Any) -> None:
        key = 0 if factory is str else self._pool.text_factory_key(
            factory, lambda: dumps_callable(factory, "text_factory"))
        self._text_factory, self._tf_key = factory, key

    # -- cursors and shortcuts --------------------------------------------

    def cursor(self, factory: Callable[[Connection], Cursor] = Cursor) -> Cursor:
        """A new cursor (``factory`` must build an mpsqlite Cursor)."""
        self._check()
        cur = factory(self)
        if not isinstance(cur, Cursor):
            raise TypeError("factory must return a cursor, not " + type(cur).__name__)
        return cur

    def execute(self, sql: str, parameters: Any = None, /) -> Cursor:
        """Shortcut: a new cursor's execute()."""
        return Cursor(self).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        """Shortcut: a new cursor's executemany()."""
        return self.cursor().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> Cursor:
        """Shortcut: a new cursor's executescript()."""
        return self.cursor().executescript(sql_script)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.rollback()
                raise
        else:
            self.rollback()

    # -- whole-database operations ----------------------------------------

    def interrupt(self) -> None:
        """Abort the statements this connection is running, from any thread."""
        self._check_open()
        for w in list(self._pool.workers):
            if w.current is self:
                w.interrupt()
        if self._pool.local is not None:
            self._pool.local.interrupt(self)

    # -- lifetime ---------------------------------------------------------

    def pool_status(self) -> dict[str, Any]:
        """The status of this connection's worker pool (see mpsqlite.pool_status)."""
        return self._pool.status()

    def close(self) -> None:
        """Roll back any open transaction and release the pool; idempotent."""
        self._check_thread()
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        with self._lock:
            if self._txn is not None:
                try:
                    self._txn.exchange(p.OP_END, "rollback", owner=self)
                except sqlite3.Error:
                    pass
                self._unpin()
            self._closed = True
        put_pool(self._pool)

    def _check_open(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")

    def _check(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        self._check_thread()

    def _check_thread(self) -> None:
        if self._thread is not None and self._thread != threading.get_ident():
            raise sqlite3.ProgrammingError(
                "SQLite objects created in a thread can only be used in that same thread. "
                f"The object was created in thread id {self._thread} and this is "
                f"thread id {threading.get_ident()}."
            )

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and hasattr(self, "_pool"):
            try:
                self._close()  # from whichever thread collects it, as sqlite3 does
            except Exception:
                pass

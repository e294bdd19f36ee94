"""The connection: one real SQLite connection in the calling process, as sqlite3 opens it.

:class:`Connection` is a subclass of :class:`sqlite3.Connection`, so every
statement runs in sqlite3's own code, on this connection, with sqlite3's
transaction rules. On a database file mpsqlite adds three things:

- a FIFO **writer gate** per file (by device and inode), taken before a write
  transaction begins, so writers queue instead of failing with
  ``database is locked``;
- **group commit**: the connection runs at ``synchronous=NORMAL`` in WAL mode
  and a durable ``commit()`` returns after an fsync of the WAL that covers it,
  shared with concurrent commits (:mod:`mpsqlite._durability`);
- **offload**: a read that proves GIL-heavy runs on a worker process holding an
  equivalent connection (:mod:`mpsqlite._offload`).

``:memory:`` and other private databases get none of these: they are sqlite3.
"""

from __future__ import annotations

import itertools
import os
import pickle
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from . import _sql
from ._database import Database, registry
from ._sql import Kind
from .cursor import Cursor

LEGACY_TRANSACTION_CONTROL: int = getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1)
_HAS_AUTOCOMMIT = sys.version_info >= (3, 12)
_UNSET: Any = object()
_ids = itertools.count(1)

_base = sqlite3.Connection
_base_cursor = sqlite3.Connection.cursor
_base_commit = sqlite3.Connection.commit
_base_rollback = sqlite3.Connection.rollback
_base_close = sqlite3.Connection.close
_base_isolation = sqlite3.Connection.isolation_level
_base_autocommit = getattr(sqlite3.Connection, "autocommit", None)
_base_del = getattr(sqlite3.Connection, "__del__", None)
_exec = sqlite3.Connection.execute  # for the connection's own setup statements only


def _file_state(con: sqlite3.Connection) -> tuple[str, str, int]:
    """The main database's absolute path ('' for a private database), journal mode and
    synchronous level, in one statement."""
    text_factory, con.text_factory = con.text_factory, bytes  # the path may not be UTF-8
    try:
        path, mode, level = _exec(
            con,
            "SELECT (SELECT file FROM pragma_database_list WHERE name = 'main'), "
            "(SELECT journal_mode FROM pragma_journal_mode), "
            "(SELECT synchronous FROM pragma_synchronous)",
        ).fetchone()
    finally:
        con.text_factory = text_factory
    return (os.fsdecode(path) if path else ""), (mode or b"").decode(), level


def _shippable(obj: Any) -> bytes:
    """Pickle a replay entry for a worker: module-level callables by reference,
    lambdas, closures and what ``__main__`` defines by value (cloudpickle)."""
    import cloudpickle

    return cloudpickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


class Connection(sqlite3.Connection):
    """A sqlite3 connection with a writer gate, group commit and offload (module docstring)."""

    _db: Database | None = None

    def __init__(
        self,
        database: str | bytes | os.PathLike[str],
        timeout: float = 5.0,
        detect_types: int = 0,
        isolation_level: str | None = "",
        check_same_thread: bool = True,
        factory: Any = None,
        cached_statements: int = 128,
        uri: bool = False,
        *,
        autocommit: Any = _UNSET,
        workers: int | None = None,
        wal: bool = True,
        group_commit: bool = True,
        offload: bool = True,
        max_write_seconds: float | None = 30.0,
    ) -> None:
        if workers is not None and (type(workers) is not int or workers < 1):
            raise ValueError(f"workers must be a positive integer, not {workers!r}")
        if max_write_seconds is not None and not max_write_seconds > 0:
            raise ValueError(f"max_write_seconds must be positive or None, not "
                             f"{max_write_seconds!r}")
        if autocommit is not _UNSET and not _HAS_AUTOCOMMIT:
            raise TypeError("'autocommit' is an invalid keyword argument for Connection()")
        if self._db is not None:  # __init__ called again on an open connection
            self._release()
        super().__init__(database, timeout, detect_types, isolation_level, check_same_thread,
                         _base, cached_statements, uri)
        self._key = next(_ids)
        self._timeout = float(timeout)
        self._detect_types = detect_types
        self._same_thread = bool(check_same_thread)
        self._max_write = max_write_seconds
        self._offload = offload
        self._gate_held = False
        self._dirty = False  # the gated transaction has written
        self._revoked: str | None = None
        self._group = False
        self._want_group = False
        self._sync_level = 2
        self._op_lock = threading.RLock()
        self._replay: dict[Any, tuple] = {}  # what a worker replays, in order made
        self._replay_version = 0
        self._shipped: tuple | None = None
        self._local_only: str | None = None  # why this connection never offloads
        self._state_ok = False  # no TEMP objects or in-memory attachments (checked lazily)
        self._udfs: frozenset[str] = frozenset()
        self._udf_sql: dict[str, bool] = {}
        self._connect = (os.fsdecode(database) if isinstance(database, (bytes, os.PathLike))
                         else database, bool(uri), float(timeout))
        path, mode, level = _file_state(self)
        if path:
            self._attach_file(path, mode, level, wal, group_commit, workers)
        if autocommit is not _UNSET:
            self.autocommit = autocommit

    def _attach_file(self, path: str, mode: str, level: int, wal: bool, group_commit: bool,
                     workers: int | None) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return  # not a plain file (a VFS of its own?): sqlite3 alone serves it
        if wal and mode != "wal":
            try:
                mode = _exec(self, "PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.Error:
                pass  # read-only, or locked by another process: left as it is
        self._db = registry.acquire((st.st_dev, st.st_ino), path, workers, "sqlite3")
        self._want_group = group_commit
        self._sync_level = level
        if group_commit and mode == "wal":
            level = self._sync_level
            if level >= 2:
                _exec(self, "PRAGMA synchronous=NORMAL")
                self._group = True

    # -- statements (called by Cursor) ---------------------------------------

    def _write(self, run: Callable[..., Any], cursor: Any, sql: str, params: Any, k: Kind) -> Any:
        """Run a statement that may write, inside the writer gate where it needs one."""
        if k is Kind.SYNC_QUERY or k is Kind.SYNC_SET:
            if self._group:
                return self._synchronous(cursor, sql, k)
        elif k is Kind.EMPTY:
            return run(cursor, sql, params)
        with self._op_lock:
            if self._revoked is not None:
                if k is not Kind.ROLLBACK:
                    raise sqlite3.OperationalError(self._revoked)  # until rolled back
                self._revoked = None
                if not self.in_transaction:  # ROLLBACK acknowledges what was rolled back
                    return run(cursor, "", ())
            took = False
            if (k is Kind.WRITE or k is Kind.BEGIN or k is Kind.JOURNAL_MODE) and (
                    not self._gate_held):
                self._take_gate()
                took = True
            try:
                result = run(cursor, sql, params)
            except sqlite3.OperationalError as exc:
                if took and getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
                    # A deferred transaction's outdated snapshot (SQLITE_BUSY_SNAPSHOT):
                    # it got no write lock, so it must not keep other writers waiting.
                    self._gate_held = False
                    self._db.gate.release(self)  # type: ignore[union-attr]
                raise
            finally:
                if self._gate_held:
                    if k is Kind.WRITE:
                        self._dirty = True
                    self._settle(k is Kind.ROLLBACK)
            if k is Kind.PRAGMA_SET:
                self._record(("pragma", _sql.pragma_name(sql)), ("sql", sql, params))
            elif k is Kind.ATTACH:
                self._record(("attach", self._replay_version), ("sql", sql, params))
            elif k is Kind.JOURNAL_MODE:
                self._journal_changed()
            if k is Kind.WRITE or k is Kind.ATTACH:
                self._state_ok = False
            return result

    def _journal_changed(self) -> None:
        """Group commit needs WAL: leaving it gives SQLite back the level asked for."""
        mode = _exec(self, "PRAGMA journal_mode").fetchone()[0]
        if self._group and mode != "wal":
            self._group = False
            _exec(self, f"PRAGMA synchronous={self._sync_level}")
        elif self._want_group and not self._group and mode == "wal" and self._sync_level >= 2:
            _exec(self, "PRAGMA synchronous=NORMAL")
            self._group = True

    def _take_gate(self) -> None:
        assert self._db is not None
        self._db.gate.acquire(self, self._timeout)
        self._gate_held = True
        self._dirty = False

    def _settle(self, rolled_back: bool = False) -> None:
        """After a statement or an end of transaction: leave the gate if no transaction is open."""
        if not self._gate_held or self.in_transaction:
            return
        dirty = self._dirty
        self._gate_held = self._dirty = False
        assert self._db is not None
        self._db.gate.release(self)
        if dirty and not rolled_back:
            self._make_durable()

    def _make_durable(self) -> None:
        if self._group and self._sync_level >= 2 and self._db is not None:
            sync = self._db.sync
            if sync is not None:
                sync.wait_durable()

    def _synchronous(self, cursor: Any, sql: str, k: Kind) -> Any:
        """PRAGMA synchronous under group commit: the level kept is reported, not SQLite's."""
        run = sqlite3.Cursor.execute
        if k is Kind.SYNC_QUERY:
            return run(cursor, "SELECT ? AS synchronous", (self._sync_level,))
        level = _sql.sync_level(sql)
        if level is None:
            return run(cursor, sql)  # let SQLite judge it
        self._sync_level = level
        return run(cursor, "PRAGMA synchronous=" + ("NORMAL" if level >= 2 else str(level)))

    def _raise_revoked(self) -> None:
        message, self._revoked = self._revoked, None
        raise sqlite3.OperationalError(message)

    def _revoke_write(self, held: float) -> None:
        """Called by a waiting writer: roll back our transaction if it sat idle too long."""
        if self._max_write is None or held <= self._max_write or self._same_thread:
            return
        if not self._op_lock.acquire(blocking=False):
            return  # a statement of ours is running: not idle
        try:
            if not self._gate_held:
                return
            try:
                _base_rollback(self)
            except sqlite3.Error:
                pass
            self._settle(rolled_back=True)
            self._revoked = (
                "the transaction was rolled back: it held the database's writer gate for more "
                f"than max_write_seconds={self._max_write:g} while other writers waited"
            )
        finally:
            self._op_lock.release()

    # -- offload -------------------------------------------------------------

    def _calls_python(self, sql: str) -> bool:
        """Whether ``sql`` calls one of this connection's Python functions."""
        hit = self._udf_sql.get(sql)
        if hit is None:
            if len(self._udf_sql) > 1024:
                self._udf_sql.clear()
            hit = self._udf_sql[sql] = _sql.mentions(sql, self._udfs)
        return hit

    def _can_offload(self, cursor: Any) -> bool:
        if not self._offload or self._local_only is not None or self.in_transaction:
            return False
        if self._detect_types or self.text_factory is not str:
            return False
        if not self._state_ok:
            temp, memory = _exec(
                self,
                "SELECT (SELECT count(*) FROM temp.sqlite_master), (SELECT count(*) FROM "
                "pragma_database_list WHERE file = '' AND name != 'temp')",
            ).fetchone()
            if temp or memory:
                return False
            self._state_ok = True
        return True

    def _record(self, key: Any, entry: tuple) -> None:
        """Note a setting a worker must replay to stand in for this connection."""
        self._replay.pop(key, None)
        self._replay[key] = entry
        self._replay_version += 1
        self._shipped = None

    def _worker_settings(self) -> tuple | None:
        """``(key, version, settings)`` for the wire, or None if they cannot travel."""
        shipped = self._shipped
        if shipped is None or shipped[1] != self._replay_version:
            entries = []
            try:
                for entry in self._replay.values():
                    if entry[0] == "call":
                        entries.append(("call", _shippable(entry[1])))
                    else:
                        entries.append(entry)
            except Exception as exc:
                self._refuse_offload(f"a registered callable cannot travel: {exc!r}")
                return None
            db = self._db
            if db is None:
                return None
            target, uri, timeout = self._connect
            # The identity is the file this connection opened, whatever the name holds now.
            connect = (target if uri else db.path, uri, timeout, db.key)
            from . import _wire

            shipped = self._shipped = (self._key, self._replay_version,
                                       _wire.settings(connect, entries))
        return shipped

    def _refuse_offload(self, why: str) -> None:
        self._local_only = why

    # -- transactions --------------------------------------------------------

    def commit(self) -> None:
        """Commit, as sqlite3; a durable commit returns once an fsync covers it."""
        with self._op_lock:
            if self._revoked is not None:
                self._raise_revoked()
            _base_commit(self)
            if self._gate_held:
                self._end_gated()

    def rollback(self) -> None:
        """Roll back, as sqlite3; also acknowledges a transaction mpsqlite revoked."""
        with self._op_lock:
            self._revoked = None
            _base_rollback(self)
            if self._gate_held:
                self._dirty = False
                self._end_gated()

    def _end_gated(self) -> None:
        """commit() or rollback() ended the gated transaction (another may have begun)."""
        dirty = self._dirty
        self._gate_held = self._dirty = False
        assert self._db is not None
        self._db.gate.release(self)
        if dirty:
            self._make_durable()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None and exc is None and tb is None:
            try:
                self.commit()
            except BaseException:
                self.rollback()
                raise
        else:
            self.rollback()
        return False

    if _HAS_AUTOCOMMIT:

        @property
        def autocommit(self) -> Any:
            return _base_autocommit.__get__(self)  # type: ignore[union-attr]

        @autocommit.setter
        def autocommit(self, value: Any) -> None:
            with self._op_lock:
                _base_autocommit.__set__(self, value)  # type: ignore[union-attr]
                if self._gate_held and value is True:
                    self._end_gated()

    @property
    def isolation_level(self) -> str | None:  # type: ignore[override]
        return _base_isolation.__get__(self)

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        with self._op_lock:
            _base_isolation.__set__(self, value)  # None commits an open transaction
            if self._gate_held and not self.in_transaction:
                self._end_gated()

    # -- cursors and shortcuts -------------------------------------------------

    def cursor(self, factory: Callable[[sqlite3.Connection], sqlite3.Cursor] = Cursor
               ) -> sqlite3.Cursor:  # type: ignore[override]
        """A new cursor; by default an mpsqlite :class:`Cursor`."""
        return _base_cursor(self, factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        return self.cursor().executescript(sql_script)

    # -- what workers replay, and what keeps a connection local ----------------------

    def _registered(self, method: str, args: tuple, kwargs: dict, key_len: int) -> None:
        key = (method, *(str(a).lower() if isinstance(a, str) else a for a in args[:key_len]))
        self._record(key, ("call", (method, args, kwargs)))

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        super().create_function(*args, **kwargs)
        name = args[0] if args else kwargs.get("name")
        narg = args[1] if len(args) > 1 else kwargs.get("narg", kwargs.get("num_params"))
        self._record(("create_function", str(name).lower(), narg),
                     ("call", ("create_function", args, kwargs)))
        self._udfs = self._udfs | {str(name).lower()}
        self._udf_sql.clear()

    def create_aggregate(self, *args: Any, **kwargs: Any) -> None:
        super().create_aggregate(*args, **kwargs)
        self._registered("create_aggregate", args, kwargs, 2)
        name = args[0] if args else kwargs.get("name")
        self._udfs = self._udfs | {str(name).lower()}
        self._udf_sql.clear()

    if hasattr(sqlite3.Connection, "create_window_function"):

        def create_window_function(self, *args: Any, **kwargs: Any) -> None:
            super().create_window_function(*args, **kwargs)
            self._registered("create_window_function", args, kwargs, 2)
            self._udfs = self._udfs | {str(args[0]).lower()}
            self._udf_sql.clear()

    def create_collation(self, *args: Any, **kwargs: Any) -> None:
        super().create_collation(*args, **kwargs)
        self._registered("create_collation", args, kwargs, 1)

    def setlimit(self, *args: Any, **kwargs: Any) -> int:
        old = super().setlimit(*args, **kwargs)
        self._registered("setlimit", args, kwargs, 1)
        return old

    def set_authorizer(self, *args: Any, **kwargs: Any) -> None:
        super().set_authorizer(*args, **kwargs)
        self._callback_set("authorizer", args, kwargs)

    def set_progress_handler(self, *args: Any, **kwargs: Any) -> None:
        super().set_progress_handler(*args, **kwargs)
        self._callback_set("progress handler", args, kwargs)

    def set_trace_callback(self, *args: Any, **kwargs: Any) -> None:
        super().set_trace_callback(*args, **kwargs)
        self._callback_set("trace callback", args, kwargs)

    def _callback_set(self, what: str, args: tuple, kwargs: dict) -> None:
        if any(a is not None for a in (*args[:1], *kwargs.values())):
            self._local_only = f"a {what} is set: statements run where it can see them"

    if hasattr(sqlite3.Connection, "load_extension"):

        def load_extension(self, *args: Any, **kwargs: Any) -> None:
            super().load_extension(*args, **kwargs)
            self._local_only = "an extension was loaded into this connection"

    if hasattr(sqlite3.Connection, "deserialize"):

        def deserialize(self, *args: Any, **kwargs: Any) -> None:
            super().deserialize(*args, **kwargs)
            if (args[1:2] or [kwargs.get("name", "main")])[0] == "main":
                self._leave_file()

    def backup(self, target: sqlite3.Connection, *args: Any, **kwargs: Any) -> None:
        """sqlite3's backup; into an mpsqlite connection, inside that one's writer gate."""
        if isinstance(target, Connection) and target._db is not None and not target._gate_held:
            with target._op_lock:
                target._take_gate()
                try:
                    super().backup(target, *args, **kwargs)
                finally:
                    target._dirty = True
                    target._settle()
                    target._state_ok = False
            return
        super().backup(target, *args, **kwargs)

    def _leave_file(self) -> None:
        """The main database is no longer the file (deserialize): sqlite3 alone from now."""
        db, self._db = self._db, None
        if db is not None:
            if self._gate_held:
                self._gate_held = False
                db.gate.release(self)
            self._group = False
            registry.release(db)

    # -- the rest -------------------------------------------------------------

    def interrupt(self) -> None:
        """Abort this connection's running statements, in this process and in workers."""
        super().interrupt()
        db = self._db
        if db is not None and db.has_workers:
            for h in list(db.pool().workers):
                if h.owner is self:
                    h.interrupt()

    def pool_status(self) -> dict[str, Any]:
        """The status of this connection's database in this process (see mpsqlite.pool_status)."""
        db = self._db
        return db.status() if db is not None else {"database": "", "size": 0, "workers": []}

    def close(self) -> None:
        """Close, as sqlite3 (an open transaction is rolled back); idempotent."""
        db = self._db
        if db is not None and db.has_workers:
            self.in_transaction  # noqa: B018 - sqlite3's checks (thread, closed) first
            db.pool().forget_connection(self._key)
        _base_close(self)
        self._release()

    def _release(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        if self._gate_held:
            self._gate_held = False
            db.gate.release(self)
        if db.has_workers:
            db.pool().forget_connection(self._key)
        registry.release(db)

    def __del__(self) -> None:
        if self._db is not None:
            try:
                self._release()
            except Exception:
                pass
        if _base_del is not None:
            _base_del(self)  # 3.13+: sqlite3's ResourceWarning for an unclosed connection

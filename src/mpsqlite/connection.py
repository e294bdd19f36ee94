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
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, Literal

from . import _later, _turn
from ._database import GONE, Database, let_go, registry
from ._durability import checkpoint_for_immutable
from ._replay import _exec, no_busy_wait
from ._timeout import Clock, check_seconds, interrupter
from ._writes import GatedWrites
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
_base_isolation: Any = sqlite3.Connection.__dict__["isolation_level"]  # the descriptor
_base_autocommit = getattr(sqlite3.Connection, "autocommit", None)
_base_del = getattr(sqlite3.Connection, "__del__", None)


def _file_state(con: sqlite3.Connection) -> tuple[str, str, int]:
    """The main database's absolute path ('' for a private database), journal mode and
    synchronous level. Plain PRAGMA statements: their table-valued forms cost a virtual
    table each, about 40 us a connect."""
    text_factory, con.text_factory = con.text_factory, bytes  # the path may not be UTF-8
    try:
        path = _exec(con, "PRAGMA database_list").fetchone()[2]
        (mode,) = _exec(con, "PRAGMA journal_mode").fetchone()
        (level,) = _exec(con, "PRAGMA synchronous").fetchone()
    finally:
        con.text_factory = text_factory
    return (os.fsdecode(path) if path else ""), (mode or b"").decode(), level


def _busy_ms(timeout: float) -> int | None:
    """The busy timeout sqlite3 sets for an int or float ``timeout`` (C's
    ``(int)(timeout*1000)``), or None where C's conversion is undefined (NaN, infinite,
    out of range)."""
    try:
        ms = int(float(timeout) * 1000)
    except (ValueError, OverflowError):
        return None
    return ms if -(2**31) <= ms < 2**31 else None


def _file_state_now(con: sqlite3.Connection, busy_ms: int | None = None,
                    zeroed: bool = False) -> tuple[str, str, int] | None:
    """:func:`_file_state` without waiting for another process's lock (see
    :func:`no_busy_wait`). None where the file is locked or is no database, which
    sqlite3.connect does not notice: its first statement that reads the file waits for
    the lock, or fails."""
    with no_busy_wait(con, busy_ms, zeroed):
        try:
            return _file_state(con)
        except sqlite3.Error:
            return None


class Connection(GatedWrites):
    """A sqlite3 connection with a writer gate, group commit and offload (module docstring)."""

    _db: Database | None = None
    _scripting = False  # inside executescript
    _clock: Clock | None = None  # times statements: statement_timeout, log_slow_statements

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
        statement_timeout: float | None = None,
        log_slow_statements: float | None = None,
        coordinate: bool = True,
    ) -> None:
        """Open as sqlite3 does. ``statement_timeout`` (seconds) interrupts a statement
        that runs longer, except that SQLite cannot stop a Python function it is calling in
        this process (on a worker, such a statement ends with the worker killed);
        ``max_write_seconds`` only rolls back a transaction idle in the writer gate while
        others wait, never a running statement; ``log_slow_statements`` (seconds) logs
        slower statements. See :mod:`mpsqlite._timeout`. ``coordinate=False`` keeps this
        connection's writes out of the writer queue shared with other processes
        (:mod:`mpsqlite._coord`): SQLite's locks alone then order it against them."""
        if workers is not None and (type(workers) is not int or workers < 1):
            raise ValueError(f"workers must be a positive integer, not {workers!r}")
        if max_write_seconds is not None and not max_write_seconds > 0:
            raise ValueError(f"max_write_seconds must be positive or None, not "
                             f"{max_write_seconds!r}")
        statement_timeout = check_seconds("statement_timeout", statement_timeout)
        log_slow_statements = check_seconds("log_slow_statements", log_slow_statements)
        if autocommit is not _UNSET and not _HAS_AUTOCOMMIT:
            raise TypeError("'autocommit' is an invalid keyword argument for Connection()")
        _later.run()
        if self._db is not None:  # __init__ called again on an open connection
            self._release()
        # mpsqlite's statements at connect must not wait for another process's lock, as
        # sqlite3.connect does not: sqlite3 sets no busy timeout until they have run.
        busy_ms = _busy_ms(timeout) if type(timeout) in (int, float) else None
        checkpoint_for_immutable(database, uri)  # whoever switched the file to WAL
        super().__init__(database, timeout=0 if busy_ms is not None else timeout,
                         detect_types=detect_types,
                         isolation_level=isolation_level,  # type: ignore[arg-type]  # "" too
                         check_same_thread=check_same_thread,
                         factory=_base, cached_statements=cached_statements, uri=uri)
        self._key = next(_ids)
        self._timeout = float(timeout)
        self._detect_types = detect_types
        self._same_thread = bool(check_same_thread)
        self._max_write = max_write_seconds
        self._offload = offload
        self._coordinate = bool(coordinate)
        self._gate_held = False
        self._dirty = False  # the gated transaction has written
        self._revoked: str | None = None
        self._group = False
        self._want_group = False
        self._sync_level = 2
        self._op_lock = threading.RLock()
        self._replay: dict[Any, tuple[Any, ...]] = {}  # what a worker replays, in order made
        self._replay_version = 0
        self._shipped: tuple[Any, ...] | None = None
        self._local_only: str | None = None  # why this connection never offloads
        self._state_ok = False  # no TEMP objects or in-memory attachments (checked lazily)
        self._temp_tables: frozenset[str] | None = frozenset()
        self._schema_read = False  # mpsqlite's own statements loaded the schema at connect
        self._udfs: frozenset[str] = frozenset()
        self._udf_sql: dict[str, bool] = {}
        self._connect = (os.fsdecode(database) if isinstance(database, (bytes, os.PathLike))
                         else database, bool(uri), float(timeout))
        self._clock = None
        if statement_timeout is not None or log_slow_statements is not None:
            self._clock = Clock(interrupter(self), statement_timeout, log_slow_statements,
                                self._connect[0])
        self._attach_later: tuple[bool, bool, int | None] | None = None
        state = _file_state_now(self, busy_ms, zeroed=busy_ms is not None)
        if state is None:
            self._attach_later = (wal, group_commit, workers)
        elif state[0]:
            self._attach_file(*state, wal, group_commit, workers)
            self._schema_read = True  # by the statements above
        if autocommit is not _UNSET:
            self.autocommit = autocommit

    def _attach_now(self) -> bool:
        """A file that was locked by another process (or unreadable) at connect: take it up
        as connect() would have, if that can be done at once and unseen. Until then the
        connection is plain sqlite3, without gate, group commit or offload."""
        with self._op_lock:
            later = self._attach_later
            # A callback would see mpsqlite's statements; WAL and synchronous cannot
            # change inside a transaction.
            if later is None or self._local_only is not None or self.in_transaction:
                return self._db is not None
            state = _file_state_now(self)
            if state is None:
                return False
            self._attach_later = None
            if state[0]:
                self._attach_file(*state, *later)
                self._schema_read = True
            return self._db is not None

    def _attach_file(self, path: str, mode: str, level: int, wal: bool, group_commit: bool,
                     workers: int | None) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return  # not a plain file (a VFS of its own?): sqlite3 alone serves it
        if wal and mode != "wal":
            if st.st_size == 0:
                self._wal_later = True  # see GatedWrites._wal_now
            else:
                mode = self._switch_to_wal(path, mode, False, level)
        self._db = registry.acquire((st.st_dev, st.st_ino), path, workers, "sqlite3")
        self._want_group = group_commit
        self._sync_level = level
        if group_commit and mode == "wal":
            level = self._sync_level
            if level >= 2:
                _exec(self, "PRAGMA synchronous=NORMAL")
                self._group = True

    # -- statements (called by Cursor) ---------------------------------------

    def _switch_to_wal(self, path: str, mode: str, new_file: bool, level: int) -> str:
        """``PRAGMA journal_mode=WAL``. A new, empty file's switch is one write of its
        header: one fdatasync of the file makes it durable, where SQLite's rollback
        journal would take four (journal, directory, journal, file). The header is
        written under an in-memory journal: an unsynced journal file on disk would
        protect nothing more, and creating and deleting it costs about 50 us."""
        try:
            if new_file:
                _exec(self, "PRAGMA synchronous=OFF")
                _exec(self, "PRAGMA journal_mode=MEMORY")
            new_mode = None
            try:
                new_mode = _exec(self, "PRAGMA journal_mode=WAL").fetchone()[0]
            finally:
                if new_file:
                    if new_mode != "wal":
                        _exec(self, f"PRAGMA journal_mode={mode}")  # as it was
                    _exec(self, f"PRAGMA synchronous={level}")
            mode = new_mode
            if new_file and mode == "wal":
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
                finally:
                    os.close(fd)
            return mode
        except (sqlite3.Error, OSError):
            return mode  # read-only, or locked by another process: left as it is

    # -- transactions --------------------------------------------------------

    def commit(self) -> None:
        """Commit, as sqlite3; a durable commit returns once an fsync covers it."""
        with self._op_lock:
            if self._scripting:
                return _base_commit(self)  # executescript's: the gate is the script's
            if self._revoked is not None:
                self._raise_revoked()
            try:
                _base_commit(self)
            except sqlite3.Error:
                self._settle(rolled_back=True)  # SQLite may have rolled back (SQLITE_FULL)
                raise
            if self._gate_held:
                self._end_gated()
            elif self._dirty:  # written outside the gate (it timed out; SQLite let it in)
                self._dirty = False
                self._make_durable()

    def rollback(self) -> None:
        """Roll back, as sqlite3; also acknowledges a transaction mpsqlite revoked."""
        with self._op_lock:
            self._revoked = None
            _base_rollback(self)
            self._dirty = False
            if self._gate_held:
                self._end_gated()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
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

    @property  # type: ignore[override]  # sqlite3's stubs: only its named levels
    def isolation_level(self) -> str | None:
        level: str | None = _base_isolation.__get__(self)
        return level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        with self._op_lock:
            _base_isolation.__set__(self, value)  # None commits an open transaction
            if self._gate_held and not self.in_transaction:
                self._end_gated()

    # -- cursors and shortcuts -------------------------------------------------

    def cursor(self,  # type: ignore[override]  # one signature for both of sqlite3's
               factory: Callable[[sqlite3.Connection], sqlite3.Cursor] = Cursor
               ) -> sqlite3.Cursor:
        """A new cursor; by default an mpsqlite :class:`Cursor`."""
        return _base_cursor(self, factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if _turn.contended and (db := self._db) is not None and _turn.short(self, db, sql):
            turn = _turn.take()  # for making the cursor too (see mpsqlite._turn)
            if turn is not None:
                try:
                    return self.cursor().execute(sql, parameters)
                finally:
                    turn.release()
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        return self.cursor().executescript(sql_script)

    if hasattr(sqlite3.Connection, "load_extension"):

        def load_extension(self, *args: Any, **kwargs: Any) -> None:
            super().load_extension(*args, **kwargs)
            self._local_only = "an extension was loaded into this connection"

    if hasattr(sqlite3.Connection, "deserialize"):

        def deserialize(self, *args: Any, **kwargs: Any) -> None:
            super().deserialize(*args, **kwargs)  # type: ignore[misc]  # 3.11+
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
                    target._temp_tables = None
            return
        super().backup(target, *args, **kwargs)

    def _leave_file(self) -> None:
        """The main database is no longer the file (deserialize): sqlite3 alone from now."""
        self._group = False
        self._release()

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
        _later.run()
        db = self._db
        return db.status() if db is not None else {"database": "", "size": 0, "workers": []}

    def close(self) -> None:
        """Close, as sqlite3 (an open transaction is rolled back); idempotent."""
        db = self._db
        if db is not None and db.has_workers:
            self.in_transaction  # noqa: B018 - sqlite3's checks (thread, closed) first
            db.pool().forget_connection(self._key)
        if db is not None and db.refs == 1 and db.sync is not None:
            # Probably the last: SQLite's close is about to remove the WAL, and freeing
            # its blocks then, as for sqlite3, costs less than at our close of it later.
            db.sync.close()
        _base_close(self)
        self._release()
        _later.run()

    def _release(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        holder = self if self._gate_held else None
        self._gate_held = False
        let_go(db, self._key, holder)

    def __del__(self) -> None:
        db = self._db
        if db is not None:
            try:
                if _later.collecting():
                    self._db = None
                    _later.soon(let_go, db, self._key, GONE if self._gate_held else None)
                else:
                    self._release()
            except Exception:
                pass
        if _base_del is not None:
            _base_del(self)  # 3.13+: sqlite3's ResourceWarning for an unclosed connection

"""The writing side of a connection: the writer gate, revocation and durable commits.

A transaction takes its database's FIFO gate (:mod:`mpsqlite._gate`) at its first write
and leaves it when it ends; a durable commit then waits for a shared fsync
(:mod:`mpsqlite._durability`). ``PRAGMA synchronous`` under group commit reports the
level the application asked for, while SQLite runs at NORMAL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any

from . import _later, _sql
from ._coord import BUSY_HINT
from ._durability import WAL_RESTART_BYTES
from ._replay import Replayed, _exec, no_busy_wait
from ._sql import Kind

_base_rollback = sqlite3.Connection.rollback
_execute = sqlite3.Cursor.execute
_executemany = sqlite3.Cursor.executemany
#: ``_temp_tables`` of a connection with a TEMP trigger: any write may reach the files.
_TRIGGERED: frozenset[str] = frozenset({"\0"})
# Raised while binding parameters, before SQLite runs a statement.
_BEFORE_STEP = (sqlite3.ProgrammingError, sqlite3.InterfaceError, OverflowError, TypeError,
                ValueError)


def _dml_target(run: Callable[..., Any], sql: str) -> tuple[str, str] | None:
    """The table a plain INSERT/UPDATE/DELETE run by ``execute``/``executemany`` writes
    (:func:`_sql.dml_target`); None for anything else, a script included."""
    return _sql.dml_target(sql) if _statement(run) else None


def _statement(run: Callable[..., Any]) -> bool:
    """Whether ``run`` runs one statement (``execute``/``executemany``), not a script."""
    return run is _execute or run is _executemany


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY (or BUSY_SNAPSHOT); 3.10's exceptions carry no error code."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF == 5 if code is not None else str(exc) == "database is locked"


class GatedWrites(Replayed):
    """The writer gate and group commit of :class:`mpsqlite.Connection`."""

    _timeout: float
    _same_thread: bool
    _max_write: float | None
    _gate_held: bool
    _dirty: bool  # the gated transaction has written
    _revoked: str | None
    _group: bool
    _want_group: bool
    _sync_level: int
    _op_lock: threading.RLock
    _temp_tables: frozenset[str] | None  # lower-case names in TEMP; None: not known now
    _schema_read: bool
    #: Blobs opened for writing outside a transaction: SQLite commits what they write as
    #: they close, unseen by group commit, so it runs at the level asked for until then.
    _blobs: tuple[weakref.ref[Any], ...] = ()
    #: A file empty at connect goes to WAL at its first write (see :meth:`_wal_now`).
    _wal_later = False
    _switch_to_wal: Callable[[str, str, bool, int], str]

    def _write(self, run: Callable[..., Any], cursor: Any, sql: str, params: Any, k: Kind) -> Any:
        """Run a statement that may write, inside the writer gate where it needs one."""
        self._db.write_statements += 1  # type: ignore[union-attr]
        if self._blobs:
            self._blobs_closed()
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
            if self._schema_read and k is Kind.WRITE:
                self._refresh_schema()
            took = False
            if (k is Kind.WRITE or k is Kind.BEGIN or k is Kind.JOURNAL_MODE) and (
                    not self._gate_held) and not (k is Kind.WRITE and self._temp_only(run, sql)):
                try:
                    self._take_gate()
                except sqlite3.OperationalError:
                    return self._ungated(run, cursor, sql, params, k)
                took = True
            timed = took
            if self._wal_later:
                if k is Kind.JOURNAL_MODE:
                    self._wal_later = False  # the application chose
                elif k is Kind.BEGIN or k is Kind.DEFERRED or (
                        k is Kind.WRITE and _statement(run) and not _sql.pragma_key(sql)[1]):
                    self._wal_now()
                    timed = False  # it opens the new WAL: its time is no sign of a wait
            started = perf_counter() if timed else 0.0  # only a first write is timed
            try:
                result = run(cursor, sql, params)
            except sqlite3.OperationalError as exc:
                if took and _busy(exc):
                    self._contended()
                    # A deferred transaction's outdated snapshot (SQLITE_BUSY_SNAPSHOT):
                    # it got no write lock, so it must not keep other writers waiting.
                    self._gate_held = False
                    self._db.gate.release(self)  # type: ignore[union-attr]
                raise
            except _BEFORE_STEP:
                if took and run is _execute:
                    # Refused while binding: SQLite never ran it, so it took no lock.
                    self._gate_held = False
                    self._db.gate.release(self)  # type: ignore[union-attr]
                raise
            finally:
                if self._gate_held:
                    if k is Kind.WRITE:
                        self._dirty = True
                    self._settle(k is Kind.ROLLBACK)
            if self._wal_later and not _statement(run) and not self.in_transaction:
                self._wal_now()  # after: the script's own PRAGMAs may set up the new file
            if timed and perf_counter() - started > BUSY_HINT:
                self._contended()  # probably waited in SQLite's busy handler
            if k is Kind.PRAGMA_SET:
                self._record(("pragma", *_sql.pragma_key(sql)), ("sql", sql, params))
            elif k is Kind.ATTACH:
                self._attached(sql, params)
            elif k is Kind.JOURNAL_MODE:
                self._journal_changed()
            if k is Kind.WRITE or k is Kind.ATTACH or k is Kind.TEMP:
                self._state_ok = False
            if k is Kind.TEMP or (k is Kind.WRITE and _dml_target(run, sql) is None):
                self._temp_tables = None  # the TEMP schema may have changed
            return result

    def _wal_now(self) -> None:
        """Switch a file that was empty at connect to WAL, before its first write that
        is not a PRAGMA. Until the file has its first page, ``PRAGMA page_size``,
        ``auto_vacuum`` and ``encoding`` still apply; a switch at connect would have
        written that page. A connection with a callback set stays as it is (the callback
        would see these statements). Where SQLite's lock refuses the switch now (another
        process's reader), the next write tries again."""
        if self._watched or self._db is None:
            self._wal_later = False
            return
        if self.in_transaction:
            return
        try:
            mode = _exec(self, "PRAGMA journal_mode").fetchone()[0]
            level = _exec(self, "PRAGMA synchronous").fetchone()[0]
            if mode != "wal":
                empty = os.stat(self._db.path).st_size == 0
                with no_busy_wait(self):
                    mode = self._switch_to_wal(self._db.path, mode, empty and level >= 1,
                                               level)
        except (sqlite3.Error, OSError):
            return  # the statement itself meets the same trouble, and reports it
        if mode != "wal":
            return
        self._wal_later = False
        self._sync_level = level
        if self._want_group and level >= 2 and not self._group:
            _exec(self, "PRAGMA synchronous=NORMAL")
            self._group = True

    def _refresh_schema(self) -> None:
        """Before the first write: the schema mpsqlite's statements at connect loaded may
        be stale, and a statement prepared on it would fail only after sqlite3's implicit
        BEGIN. A read of the schema table reloads it if another connection changed it, so
        the write prepares as on a new sqlite3 connection, which loads it then."""
        self._schema_read = False
        if self._local_only is None and not self.in_transaction:  # no callback to see it
            _exec(self, "SELECT 1 FROM sqlite_schema LIMIT 0")

    def _temp_only(self, run: Callable[..., Any], sql: str) -> bool:
        """Whether a statement writes only a TEMP table of this connection, which takes no
        lock on the database file (sqlite3 lets it run beside another's write)."""
        if self._local_only is not None:
            return False  # a callback would see mpsqlite's own query below
        target = _dml_target(run, sql)
        if target is None or target[0] not in ("", "temp"):
            return False
        tables = self._temp_tables
        if tables is None:
            rows = _exec(self, "SELECT type, lower(name) FROM temp.sqlite_master").fetchall()
            tables = _TRIGGERED if any(t == "trigger" for t, _ in rows) else frozenset(
                name for t, name in rows if t == "table")
            self._temp_tables = tables
        return tables is not _TRIGGERED and (target[0] == "temp" or target[1] in tables)

    def _contended(self) -> None:
        """Another process writes this file too: queue with it for a while (_coord)."""
        turn = self._db.gate.turn if self._db is not None else None
        if turn is not None and getattr(self, "_coordinate", True):
            turn.engage()

    def _ungated(self, run: Callable[..., Any], cursor: Any, sql: str, params: Any,
                 k: Kind) -> Any:
        """The gate timed out: sqlite3 decides at once, as it would have after its own
        wait (its error for bad input; ``database is locked`` with SQLite's code, the
        implicit BEGIN left open). Should SQLite's lock be free after all, it runs."""
        with no_busy_wait(self):  # then the busy timeout set now (the user's PRAGMA, if any)
            result = run(cursor, sql, params)
        if k is Kind.JOURNAL_MODE:
            self._journal_changed()
        elif k is Kind.WRITE:
            self._state_ok = False
            if self.in_transaction:
                self._dirty = True  # commit() makes it durable
            else:
                self._make_durable()
        return result

    def _journal_changed(self) -> None:
        """Group commit needs WAL: leaving it gives SQLite back the level asked for."""
        mode = _exec(self, "PRAGMA journal_mode").fetchone()[0]
        if self._db is not None and self._db.sync is not None:
            self._db.sync.close()  # leaving WAL removes the file; coming back makes a new one
        if self._group and mode != "wal":
            self._group = False
            _exec(self, f"PRAGMA synchronous={self._sync_level}")
        elif self._want_group and not self._group and mode == "wal" and self._sync_level >= 2:
            _exec(self, "PRAGMA synchronous=NORMAL")
            self._group = True

    def _take_gate(self) -> None:
        assert self._db is not None
        _later.run()  # a collected connection may hold the gate
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
                if sync.wal_size > WAL_RESTART_BYTES and not sync.restarting:
                    self._truncate_wal(sync)

    def _truncate_wal(self, sync: Any) -> None:
        """Bound a WAL that readers kept from restarting: inside the writer gate, wait (up
        to ``timeout``) for the readers still in it, checkpoint everything, truncate."""
        sync.restarting = True
        try:
            self._take_gate()
        except sqlite3.OperationalError:
            sync.restarting = False
            return  # writers queued for longer than timeout: another commit tries again
        try:
            _exec(self, "PRAGMA wal_checkpoint(TRUNCATE)")
            sync.wal_size = 0
        except sqlite3.Error:
            pass  # readers outlasted timeout: the next commit tries again
        finally:
            self._gate_held = False
            self._db.gate.release(self)  # type: ignore[union-attr]
            sync.restarting = False

    if hasattr(sqlite3.Connection, "blobopen"):

        def blobopen(self, *args: Any, **kwargs: Any) -> Any:
            """sqlite3's blobopen; what a blob writes is as durable as a commit. Inside a
            transaction its commit() syncs it; outside one SQLite commits as the blob
            closes, beyond group commit's sight, so SQLite itself syncs that commit: the
            connection runs at the level asked for until such blobs have closed."""
            blob = super().blobopen(*args, **kwargs)  # type: ignore[misc]  # 3.11+
            if (self._group and not kwargs.get("readonly", False)
                    and str(kwargs.get("name", "main")).lower() == "main"):
                with self._op_lock:
                    if self.in_transaction:
                        self._dirty = True
                    else:
                        if not self._blobs:
                            _exec(self, f"PRAGMA synchronous={self._sync_level}")
                        self._blobs = (*self._blobs, weakref.ref(blob))
            return blob

    def _blobs_closed(self) -> None:
        """Back to NORMAL under group commit once the blobs of :meth:`blobopen` have closed."""
        if self.in_transaction:
            return
        open_ = []
        for ref in self._blobs:
            blob = ref()
            if blob is not None:
                try:
                    len(blob)
                except sqlite3.ProgrammingError:  # closed
                    continue
                open_.append(ref)
        self._blobs = tuple(open_)
        if not open_ and self._group and self._sync_level >= 2:
            _exec(self, "PRAGMA synchronous=NORMAL")

    def _synchronous(self, cursor: Any, sql: str, k: Kind) -> Any:
        """PRAGMA synchronous under group commit: the level kept is reported, not SQLite's."""
        run = sqlite3.Cursor.execute
        if k is Kind.SYNC_QUERY:
            return run(cursor, "SELECT ? AS synchronous", (self._sync_level,))
        level = _sql.sync_level(sql)
        if level is None:
            return run(cursor, sql)  # let SQLite judge it
        done = run(cursor, "PRAGMA synchronous="
                   + ("NORMAL" if level >= 2 and not self._blobs else str(level)))
        self._sync_level = level  # not where SQLite refused it (inside a transaction)
        return done

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

    def _end_gated(self) -> None:
        """commit() or rollback() ended the gated transaction (another may have begun)."""
        dirty = self._dirty
        self._gate_held = self._dirty = False
        assert self._db is not None
        self._db.gate.release(self)
        if dirty:
            self._make_durable()

"""The cursor: sqlite3's own, routing each statement before sqlite3 runs it.

A read runs here, in sqlite3's C code, unless the offload policy has judged
the same SQL GIL-heavy (:mod:`mpsqlite._offload`); then a worker runs it and
the cursor serves the worker's rows. While threads contend, a short read
runs in the short-read turn (:mod:`mpsqlite._turn`). Anything that may
write goes through the connection's writer gate. Fetching is sqlite3's own,
untouched, except that ``fetchall`` and ``fetchmany`` note how many rows a
read returned. On a connection with ``statement_timeout`` or
``log_slow_statements`` each statement is timed by :mod:`mpsqlite._timeout`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from time import thread_time
from typing import TYPE_CHECKING, Any

from . import _offload, _turn
from ._sql import Kind, _memo, kind

if TYPE_CHECKING:
    from ._database import Database
    from ._timeout import Clock
    from .connection import Connection

_execute = sqlite3.Cursor.execute
_executemany = sqlite3.Cursor.executemany
_executescript = sqlite3.Cursor.executescript
_fetchmany = sqlite3.Cursor.fetchmany
_fetchall = sqlite3.Cursor.fetchall
_READ = Kind.READ
_HEAVY_ROWS = _offload.HEAVY_ROWS
_HEAVY_CPU = _offload.HEAVY_CPU


def _taken_up(con: Any) -> Database | None:
    """The database of a connection whose file was locked at connect, if it can take it
    up now (see ``Connection._attach_now``); None while it is plain sqlite3."""
    if getattr(con, "_attach_later", None) is not None and con._attach_now():
        db: Database | None = con._db
        return db
    return None


def _run_script(cursor: Any, script: str, _params: Any) -> Any:
    con = cursor.connection
    con._scripting = True  # on 3.10 the script's own COMMIT calls Connection.commit()
    try:
        return _executescript(cursor, script)
    finally:
        con._scripting = False


class Cursor(sqlite3.Cursor):
    """A :class:`sqlite3.Cursor` whose statements pass mpsqlite's gate and offload policy."""

    _judge: str | None = None  # SQL of the read just run here, judged by what it returns
    _t0: float | None = None  # thread CPU time when it began, if it calls Python functions
    _seen = 0  # rows fetchmany returned for it so far
    _clocked = False  # the connection's clock is timing the statement being run

    if TYPE_CHECKING:
        @property
        def connection(self) -> Connection:
            """mpsqlite's :class:`Connection` wherever a statement gets past ``_db is None``."""

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        con = self.connection
        clock: Clock | None = getattr(con, "_clock", None)
        if clock is not None and not self._clocked:
            return clock.run(self, Cursor.execute, sql, parameters)
        db: Database | None = getattr(con, "_db", None) or _taken_up(con)
        if db is None:
            return _execute(self, sql, parameters)
        try:
            k = _memo.get(sql)
        except TypeError:  # unhashable, so no str
            k = None
        if k is None:
            if type(sql) is not str:
                return _execute(self, sql, parameters)  # sqlite3's own TypeError
            k = kind(sql)
        if k is _READ:
            if sql in db.heavy and con._can_offload(self) and _offload.run_remote(
                    self, con, db, sql, parameters):
                return self
            db.local_statements += 1
            self._judge, self._seen = sql, 0
            if con._udfs and con._calls_python(sql):
                self._t0 = t0 = thread_time()
                _execute(self, sql, parameters)
                if thread_time() - t0 >= _HEAVY_CPU:
                    db.judge(sql, True)
                return self
            self._t0 = None
            if _turn.contended and not self._clocked:
                _turn.read(self, db, sql, parameters)
            elif _turn.CONTENDED:  # the turn is on: watch for readers that meet in SQLite
                _turn.last = me = id(self)
                _execute(self, sql, parameters)
                if _turn.last != me:  # another thread read while this one was in SQLite
                    _turn.contended = _turn.CONTENDED
            else:
                _execute(self, sql, parameters)
            con._schema_read = False  # the read checked the schema: a write prepares on it
            return self
        self._judge = None
        done: Cursor = con._write(_execute, self, sql, parameters, k)
        return done

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor:
        con = self.connection
        clock: Clock | None = getattr(con, "_clock", None)
        if clock is not None and not self._clocked:
            return clock.run(self, Cursor.executemany, sql, seq_of_parameters)
        db: Database | None = getattr(con, "_db", None) or _taken_up(con)
        if db is None or type(sql) is not str:
            return _executemany(self, sql, seq_of_parameters)
        k = kind(sql)
        if k is _READ:
            return _executemany(self, sql, seq_of_parameters)  # sqlite3 refuses it
        self._judge = None
        done: Cursor = con._write(_executemany, self, sql, seq_of_parameters, k)
        return done

    def executescript(self, sql_script: str, /) -> Cursor:
        con = self.connection
        clock: Clock | None = getattr(con, "_clock", None)
        if clock is not None and not self._clocked:
            return clock.run(self, Cursor.executescript, sql_script)
        db: Database | None = getattr(con, "_db", None) or _taken_up(con)
        if db is None or type(sql_script) is not str:
            # sqlite3 returns the cursor itself; its stubs say a plain sqlite3.Cursor
            return _executescript(self, sql_script)  # type: ignore[return-value]
        self._judge = None
        lowered = sql_script.lower()
        if "pragma" in lowered or "attach" in lowered:
            con._refuse_offload("a script changed connection settings workers cannot replay")
        done: Cursor = con._write(_run_script, self, sql_script, None, Kind.WRITE)
        return done

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = _fetchmany(self) if size is None else _fetchmany(self, size)
        if self._judge is not None:
            self._seen += len(rows)
            if self._seen >= _HEAVY_ROWS or not rows:
                self._judged()
        return rows

    def fetchall(self) -> list[Any]:
        rows = _fetchall(self)
        if self._judge is not None:
            self._seen += len(rows)
            self._judged()
        return rows

    def _judged(self) -> None:
        sql, self._judge = self._judge, None
        t0 = self._t0
        heavy = self._seen >= _HEAVY_ROWS or (t0 is not None and thread_time() - t0 >= _HEAVY_CPU)
        db: Database | None = getattr(self.connection, "_db", None)
        if heavy and db is not None and sql is not None:
            db.judge(sql, True)

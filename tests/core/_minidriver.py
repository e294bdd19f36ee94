"""A minimal DB-API 2.0 driver that is not sqlite3, for mpsqlite's ``driver=`` option.

It stores data with sqlite3 underneath but behaves like most DB-API drivers:
a transaction opens implicitly at the first statement that writes, and it
raises exception classes of its own. Its cursor has PEP 249's fetch methods
and nothing more.
"""

from __future__ import annotations

import sqlite3
from typing import Any

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"


class Error(Exception):
    pass


class DatabaseError(Error):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


def _translate(exc: sqlite3.Error) -> Error:
    for cls in (IntegrityError, ProgrammingError, OperationalError):
        if type(exc).__name__ == cls.__name__:
            return cls(str(exc))
    return DatabaseError(str(exc))


def connect(database: str, interruptible: bool = True, **kwargs: Any) -> Connection:
    return Connection(database) if interruptible else _Uninterruptible(database)


class Connection:
    def __init__(self, database: str) -> None:
        self._con = sqlite3.connect(database, isolation_level=None, timeout=10)
        self._in_txn = False

    def cursor(self) -> Cursor:
        return Cursor(self)

    def commit(self) -> None:
        if self._in_txn:
            self._con.execute("COMMIT")
            self._in_txn = False

    def rollback(self) -> None:
        if self._in_txn:
            self._con.execute("ROLLBACK")
            self._in_txn = False

    def interrupt(self) -> None:
        self._con.interrupt()

    def close(self) -> None:
        self._con.close()


class _Uninterruptible(Connection):
    """A connection of a driver that cannot stop a running statement."""

    interrupt = None  # type: ignore[assignment]


class Cursor:
    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._cur = connection._con.cursor()

    @property
    def description(self) -> Any:
        return self._cur.description

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> Any:
        return self._cur.lastrowid

    def execute(self, sql: str, params: Any = ()) -> Cursor:
        try:
            if not self._conn._in_txn and not sql.lstrip().upper().startswith("SELECT"):
                self._conn._con.execute("BEGIN")
                self._conn._in_txn = True
            self._cur.execute(sql, params)
        except sqlite3.Error as exc:
            raise _translate(exc) from None
        return self

    def executemany(self, sql: str, seq: Any) -> Cursor:
        for params in seq:
            self.execute(sql, params)
        return self

    def fetchone(self) -> Any:
        return self._fetch(self._cur.fetchone)

    def fetchmany(self, n: int = 1) -> list:
        return self._fetch(self._cur.fetchmany, n)

    def fetchall(self) -> list:
        return self._fetch(self._cur.fetchall)

    def _fetch(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            raise _translate(exc) from None

    def close(self) -> None:
        self._cur.close()

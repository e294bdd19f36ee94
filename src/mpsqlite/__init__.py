"""mpsqlite: SQLite for multithreaded Python, on every core.

A DB-API 2.0 (PEP 249) drop-in for :mod:`sqlite3` whose connections run each
statement in a pool of worker processes, each holding its own real SQLite
connection. Threads may share connections; reads outside a transaction run
in parallel on any worker; a transaction stays on one worker; writers queue
for their turn instead of failing with ``database is locked``::

    import mpsqlite

    con = mpsqlite.connect("app.db", workers=4)
    con.execute("create table if not exists item(id integer primary key, name text)")
    with con:
        con.execute("insert into item(name) values (?)", ("spam",))
    print(con.execute("select * from item").fetchall())

The exceptions are sqlite3's own classes, so ``except sqlite3.Error`` keeps
working. Functions, aggregates and collations registered on a connection are
installed in every worker of its pool (pool-wide), as are connection-level
pragmas such as ``PRAGMA foreign_keys = ON``.
"""

from __future__ import annotations

import sqlite3 as _sqlite3
from typing import Any

from .connection import Connection
from .cursor import Cursor
from .dbapi import (
    BINARY,
    DATETIME,
    NUMBER,
    ROWID,
    STRING,
    Binary,
    Date,
    DateFromTicks,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
)
from .registry import pool_status, register_converter, shutdown
from .row import Row
from .settings import LEGACY_TRANSACTION_CONTROL

__version__ = "0.1.0"

apilevel = "2.0"
# Threads may share the module and connections, not cursors.
threadsafety = 2
paramstyle = "qmark"

version = __version__
version_info = tuple(int(x) for x in __version__.split("."))
sqlite_version = _sqlite3.sqlite_version
sqlite_version_info = _sqlite3.sqlite_version_info

Warning = _sqlite3.Warning
Error = _sqlite3.Error
InterfaceError = _sqlite3.InterfaceError
DatabaseError = _sqlite3.DatabaseError
DataError = _sqlite3.DataError
OperationalError = _sqlite3.OperationalError
IntegrityError = _sqlite3.IntegrityError
InternalError = _sqlite3.InternalError
ProgrammingError = _sqlite3.ProgrammingError
NotSupportedError = _sqlite3.NotSupportedError

PrepareProtocol = _sqlite3.PrepareProtocol
PARSE_DECLTYPES = _sqlite3.PARSE_DECLTYPES
PARSE_COLNAMES = _sqlite3.PARSE_COLNAMES
adapters = _sqlite3.adapters
converters = _sqlite3.converters
register_adapter = _sqlite3.register_adapter
complete_statement = _sqlite3.complete_statement
enable_callback_tracebacks = _sqlite3.enable_callback_tracebacks


def __getattr__(name: str) -> Any:
    """sqlite3's numeric constants (SQLITE_*) are mpsqlite's too."""
    if name.startswith("SQLITE_") and hasattr(_sqlite3, name):
        return getattr(_sqlite3, name)
    raise AttributeError(f"module 'mpsqlite' has no attribute {name!r}")


def connect(
    database: Any,
    timeout: float = 5.0,
    detect_types: int = 0,
    isolation_level: str | None = "",
    check_same_thread: bool = False,
    factory: type[Connection] | None = None,
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
) -> Connection:
    """Open a connection, as :func:`sqlite3.connect`, backed by a worker pool.

    Extra keyword arguments: ``workers`` (pool size, default one per core;
    private databases such as ``:memory:`` always get one), ``wal`` (switch a
    file database to WAL mode, default on), ``max_write_seconds`` (an idle
    transaction holding the writer slot longer than this is rolled back when
    another writer waits; None disables), ``local_reads`` (let cheap reads
    outside a transaction run in the calling thread on a read-only connection,
    see :mod:`mpsqlite.local`; default on), ``group_commit`` (durable commits
    share fsyncs, see :mod:`mpsqlite.durability`; default on), ``driver``/``driver_kwargs`` (the
    DB-API module the workers use, default ``sqlite3``).
    ``check_same_thread`` defaults to False: sharing is the point.
    """
    cls = factory or Connection
    return cls(
        database,
        timeout,
        detect_types,
        isolation_level,
        check_same_thread,
        None,
        cached_statements,
        uri,
        autocommit=autocommit,
        workers=workers,
        wal=wal,
        max_write_seconds=max_write_seconds,
        local_reads=local_reads,
        group_commit=group_commit,
        driver=driver,
        driver_kwargs=driver_kwargs,
    )


__all__ = [
    "BINARY", "DATETIME", "NUMBER", "ROWID", "STRING", "Binary", "Connection", "Cursor",
    "DataError", "DatabaseError", "Date", "DateFromTicks", "Error", "IntegrityError",
    "InterfaceError", "InternalError", "LEGACY_TRANSACTION_CONTROL", "NotSupportedError",
    "OperationalError", "PARSE_COLNAMES", "PARSE_DECLTYPES", "PrepareProtocol",
    "ProgrammingError", "Row", "Time", "TimeFromTicks", "Timestamp", "TimestampFromTicks",
    "Warning", "adapters", "apilevel", "complete_statement", "connect", "converters",
    "enable_callback_tracebacks", "paramstyle", "pool_status", "register_adapter",
    "register_converter", "shutdown", "sqlite_version", "sqlite_version_info",
    "threadsafety", "version", "version_info",
]

"""mpsqlite: SQLite for multithreaded Python, on every core.

A DB-API 2.0 (PEP 249) drop-in for :mod:`sqlite3`: each connection is one
real SQLite connection in the calling process, opened as ``sqlite3.connect``
opens it, and :class:`Connection` and :class:`Cursor` are subclasses of
sqlite3's own. On a database file mpsqlite adds a FIFO writer gate (writers
queue instead of failing with ``database is locked``), group commit (durable
commits share fsyncs) and offload (reads that prove GIL-heavy run on worker
processes)::

    import mpsqlite

    con = mpsqlite.connect("app.db")
    con.execute("create table if not exists item(id integer primary key, name text)")
    with con:
        con.execute("insert into item(name) values (?)", ("spam",))
    print(con.execute("select * from item").fetchall())

Everything else (exceptions, ``Row``, adapters, converters, ``Blob``) is
sqlite3's own object, so ``except sqlite3.Error`` and ``isinstance(con,
sqlite3.Connection)`` keep working.
"""

from __future__ import annotations

import inspect
import sqlite3 as _sqlite3
import sys as _sys
import warnings
from typing import Any

from ._database import pool_status, shutdown
from ._driver import DriverConnection
from ._workers import WorkerDied
from .connection import LEGACY_TRANSACTION_CONTROL, Connection
from .cursor import Cursor
from .dbapi import BINARY, DATETIME, NUMBER, ROWID, STRING

__version__ = "0.2.0"

# sqlite3's module attributes are mpsqlite's: the same objects, not copies.
for _name in dir(_sqlite3):
    if not _name.startswith("_") and _name not in ("connect", "Connection", "Cursor", "dbapi2",
                                                    "dump"):
        globals()[_name] = getattr(_sqlite3, _name)
del _name
# ``from sqlite3 import dbapi2 as Database`` (Django's backend) must find mpsqlite itself.
dbapi2 = _sys.modules[__name__]

apilevel = "2.0"
threadsafety = _sqlite3.threadsafety
paramstyle = "qmark"
Row = _sqlite3.Row
Error = _sqlite3.Error
Warning = _sqlite3.Warning
InterfaceError = _sqlite3.InterfaceError
DatabaseError = _sqlite3.DatabaseError
DataError = _sqlite3.DataError
OperationalError = _sqlite3.OperationalError
IntegrityError = _sqlite3.IntegrityError
InternalError = _sqlite3.InternalError
ProgrammingError = _sqlite3.ProgrammingError
NotSupportedError = _sqlite3.NotSupportedError
register_adapter = _sqlite3.register_adapter
register_converter = _sqlite3.register_converter
adapters = _sqlite3.adapters
converters = _sqlite3.converters
PARSE_DECLTYPES = _sqlite3.PARSE_DECLTYPES
PARSE_COLNAMES = _sqlite3.PARSE_COLNAMES
complete_statement = _sqlite3.complete_statement


def __getattr__(name: str) -> Any:
    """What sqlite3 serves lazily (deprecated names, SQLITE_* constants) mpsqlite serves too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = getattr(_sqlite3, name)
        except AttributeError:
            raise AttributeError(f"module 'mpsqlite' has no attribute {name!r}") from None
    for warning in caught:  # a deprecation names the caller's line, not ours
        warnings.warn(warning.message, warning.category, stacklevel=2)
    return value


def connect(database: Any, *args: Any, **kwargs: Any) -> Any:
    """Open a connection, as :func:`sqlite3.connect`, with mpsqlite's additions.

    Keyword options beyond sqlite3's: ``workers`` (most worker processes for
    this database, default one per core), ``wal`` (switch a file database to
    WAL, default on), ``group_commit`` (durable commits share fsyncs, default
    on), ``offload`` (GIL-heavy reads may run on workers, default on),
    ``max_write_seconds`` (a transaction idle in the writer gate longer than
    this while others wait is rolled back; default 30, None disables),
    ``coordinate`` (share one FIFO writer queue with the other processes on this
    host that write the same file, default on), and
    ``driver``/``driver_kwargs`` (another DB-API module, see
    :class:`mpsqlite.DriverConnection`). ``autocommit`` as sqlite3 (3.12+).

    As sqlite3 does, the arguments go to ``factory`` (default
    :class:`Connection`) exactly as given, ``factory`` among them.
    """
    driver = kwargs.pop("driver", "sqlite3")
    if driver != "sqlite3":
        return DriverConnection(database, driver, **kwargs)
    kwargs.pop("driver_kwargs", None)
    factory = args[4] if len(args) > 4 else kwargs.get("factory")
    if args and _POSITIONAL_DEPRECATED:
        # As sqlite3 3.13 warns from C, at the caller's line: for connect(), and for
        # Connection() when that is the factory (another factory's __init__ calls it).
        for name in ("sqlite3.connect", *(("_sqlite3.Connection",)
                                          if factory in (None, Connection) else ())):
            warnings.warn(f"Passing more than 1 positional argument to {name}() is "
                          f"deprecated. {_KEYWORD_ONLY_LATER}", DeprecationWarning,
                          stacklevel=2)
    return (factory or Connection)(database, *args, **kwargs)


_POSITIONAL_DEPRECATED = _sys.version_info >= (3, 13)
_KEYWORD_ONLY_LATER = (
    "Parameters 'timeout', 'detect_types', 'isolation_level', 'check_same_thread', "
    "'factory', 'cached_statements' and 'uri' will become keyword-only parameters in "
    "Python 3.15.")


def _connect_signature() -> inspect.Signature:
    params = list(inspect.signature(Connection.__init__).parameters.values())[1:]
    params += [
        inspect.Parameter("driver", inspect.Parameter.KEYWORD_ONLY, default="sqlite3",
                          annotation="str"),
        inspect.Parameter("driver_kwargs", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation="dict[str, Any] | None"),
    ]
    return inspect.Signature(params)


connect.__signature__ = _connect_signature()  # type: ignore[attr-defined]

__all__ = [
    "BINARY", "DATETIME", "NUMBER", "ROWID", "STRING", "Connection", "Cursor",
    "DriverConnection", "LEGACY_TRANSACTION_CONTROL", "Row", "WorkerDied", "connect",
    "pool_status", "shutdown",
    "Error", "Warning", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
    "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
    "apilevel", "threadsafety", "paramstyle",
    "register_adapter", "register_converter", "adapters", "converters",
    "PARSE_DECLTYPES", "PARSE_COLNAMES", "complete_statement",
]

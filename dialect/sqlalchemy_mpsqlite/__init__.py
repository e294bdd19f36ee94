"""SQLAlchemy 2.x dialect ``sqlite+mpsqlite``: SQLAlchemy's SQLite dialect on mpsqlite.

Installing mpsqlite registers it (entry point ``sqlite.mpsqlite`` of
``sqlalchemy.dialects``), so an application switches by changing the URL::

    from sqlalchemy import create_engine

    engine = create_engine("sqlite+mpsqlite:///app.db?workers=4")

URLs: ``sqlite+mpsqlite:///relative/app.db``, ``sqlite+mpsqlite:////abs/app.db``,
``sqlite+mpsqlite://`` (``:memory:``: plain sqlite3, one database per
connection), ``sqlite+mpsqlite:///file:app.db?mode=ro&uri=true``. Query options
go to ``mpsqlite.connect()`` (``workers``, ``timeout``, ``wal``, ...); unknown
names and bad values raise ``ArgumentError``. ``begin=write`` (the default)
sends ``BEGIN`` right before a transaction's first write (``BEGIN IMMEDIATE``
before a first SAVEPOINT), so a read-then-write session queues in the writer gate
instead of failing with ``database is locked``; ``deferred``, ``immediate``,
``exclusive`` and ``driver`` are the alternatives. Types, DDL, reflection and the SQL
compiler are stock.

The full user documentation is the docstring of :mod:`sqlalchemy_mpsqlite.base`
(and ``docs/sqlalchemy.md``). The dialect (and with it SQLAlchemy) is imported
on first use, so that worker processes can import
:mod:`sqlalchemy_mpsqlite.functions` without SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import MPSQLiteDialect

    dialect = MPSQLiteDialect

__all__ = ["MPSQLiteDialect", "dialect"]


def __getattr__(name: str) -> Any:
    if name in ("MPSQLiteDialect", "dialect"):
        from .base import MPSQLiteDialect

        return MPSQLiteDialect
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

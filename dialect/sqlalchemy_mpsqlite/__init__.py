"""SQLAlchemy 2.x dialect ``sqlite+mpsqlite``: SQLite through mpsqlite's worker processes.

Registered as the ``sqlite.mpsqlite`` entry point of ``sqlalchemy.dialects``;
the user documentation is the docstring of :mod:`sqlalchemy_mpsqlite.base`.
"""

from .base import MPSQLiteDialect

dialect = MPSQLiteDialect

__all__ = ["MPSQLiteDialect", "dialect"]

"""SQLAlchemy 2.x dialect ``sqlite+mpsqlite``: SQLite through mpsqlite's worker processes.

Registered as the ``sqlite.mpsqlite`` entry point of ``sqlalchemy.dialects``;
the user documentation is the docstring of :mod:`sqlalchemy_mpsqlite.base`.
The dialect (and with it SQLAlchemy) is imported on first use, so that worker
processes can import :mod:`sqlalchemy_mpsqlite.functions` without SQLAlchemy.
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

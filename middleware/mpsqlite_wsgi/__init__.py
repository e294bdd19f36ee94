"""WSGI middleware giving every request its own SQLAlchemy ORM session, ended correctly.

>>> from mpsqlite_wsgi import SessionMiddleware, current_session
>>> app = SessionMiddleware(wsgi_app, engine)          # doctest: +SKIP
"""

from .context import (
    ROLLBACK_KEY,
    SESSION_KEY,
    SESSION_OVERRIDE_KEY,
    NoSessionError,
    current_session,
    in_request,
    mark_for_rollback,
)
from .middleware import SessionMiddleware, default_commit_veto
from .retry import RetryPolicy, is_transient
from .sqlite import enable_sqlite_transactions

__all__ = [
    "ROLLBACK_KEY",
    "SESSION_KEY",
    "SESSION_OVERRIDE_KEY",
    "NoSessionError",
    "RetryPolicy",
    "SessionMiddleware",
    "current_session",
    "default_commit_veto",
    "enable_sqlite_transactions",
    "in_request",
    "is_transient",
    "mark_for_rollback",
]

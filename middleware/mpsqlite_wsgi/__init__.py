"""WSGI middleware giving every request its own SQLAlchemy ORM session, ended correctly.

Wrap any WSGI application (CherryPy, Flask, bare WSGI) and serve it with any
WSGI server (cheroot, waitress, gunicorn, mod_wsgi); it works on any engine::

    from mpsqlite_wsgi import RetryPolicy, SessionMiddleware, current_session

    app = SessionMiddleware(wsgi_app, engine, retry=RetryPolicy())

Inside a request ``current_session()`` is that request's session (also
``environ["mpsqlite_wsgi.session"]``), made lazily on first use. The session is
committed when the app returns a status below 400, rolled back when it
raises, answers 4xx/5xx or calls ``mark_for_rollback()``, and always closed.
The commit happens before the server's ``start_response``, so a failed commit
becomes a clean 500 rather than a 200 whose data was never saved; bodies up to
``buffer_size`` (64 KiB) are produced inside the transaction. With
``retry=RetryPolicy()`` a request that failed with a transient database error
("database is locked", serialization failures) runs again with a fresh
session. For stock ``sqlite://``, ``enable_sqlite_transactions(engine)`` makes
SAVEPOINT safe; ``mpsqlite_wsgi.testing`` helps test an app under it.
Full documentation: ``docs/wsgi.md``.
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

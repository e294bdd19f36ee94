"""Request scope: the per-request session and the context-local accessors that reach it.

The active scope lives in a :class:`contextvars.ContextVar`, so each thread (and each
greenlet or task with its own context) sees only the request it is serving.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

#: environ key under which the request's :class:`~sqlalchemy.orm.Session` is stored.
SESSION_KEY = "mpsqlite_wsgi.session"
#: environ key an application may set to a true value to force a rollback for the request.
ROLLBACK_KEY = "mpsqlite_wsgi.rollback"
#: environ key for a caller-owned session the middleware uses instead of making one
#: (see :mod:`mpsqlite_wsgi.testing`); the middleware commits/rolls it back but never closes it.
SESSION_OVERRIDE_KEY = "mpsqlite_wsgi.use_session"


class NoSessionError(RuntimeError):
    """Raised by the accessors when called outside a request served by SessionMiddleware."""


class RequestScope:
    """Owns the session of one request attempt and remembers what the request asked for."""

    def __init__(
        self,
        factory: Callable[[], Session],
        environ: dict[str, Any],
        override: Session | None = None,
    ) -> None:
        self.environ = environ
        self.owns_session = override is None
        # Creating a Session does no database work: a connection is checked out on first use.
        self.session: Session = override if override is not None else factory()
        self.rollback_requested = False
        self.db_errors: list[BaseException] = []

    def wants_rollback(self) -> bool:
        """True when the app asked for a rollback via mark_for_rollback() or the environ flag."""
        return self.rollback_requested or bool(self.environ.get(ROLLBACK_KEY))

    def commit(self) -> None:
        """Commit if the session has begun a transaction; a no-op otherwise."""
        if self.session.in_transaction():
            self.session.commit()

    def rollback(self) -> None:
        """Roll back whatever the session has begun; a no-op otherwise."""
        if self.session.in_transaction():
            self.session.rollback()

    def end(self) -> None:
        """Release the session: close it if we made it, otherwise just end its transaction."""
        if self.owns_session:
            self.session.close()
        else:
            self.rollback()


_current: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "mpsqlite_wsgi_scope", default=None
)


@contextmanager
def activated(scope: RequestScope) -> Iterator[RequestScope]:
    """Make *scope* the current one for the duration of the block (restores the previous)."""
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def current_scope() -> RequestScope | None:
    """The scope of the request being served in this context, or None."""
    return _current.get()


def _require_scope() -> RequestScope:
    scope = _current.get()
    if scope is None:
        raise NoSessionError(
            "no request session here: current_session()/mark_for_rollback() only work "
            "while SessionMiddleware is serving a request in this thread/context"
        )
    return scope


def current_session() -> Session:
    """Return the session of the request being served; raise NoSessionError outside one."""
    return _require_scope().session


def mark_for_rollback() -> None:
    """Force the current request's transaction to be rolled back instead of committed."""
    scope = _require_scope()
    scope.rollback_requested = True
    scope.environ[ROLLBACK_KEY] = True


def in_request() -> bool:
    """True while a SessionMiddleware request is active in this context."""
    return _current.get() is not None

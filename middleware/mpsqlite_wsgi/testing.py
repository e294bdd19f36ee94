"""Helpers for an application's own tests: run requests against a session the test controls.

``rollback_session(engine)`` yields a session inside an outer transaction that is rolled back
when the block ends; requests run through SessionMiddleware with ``environ_for(session)`` use
that session, so the app's commits become savepoint releases and nothing reaches the database.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any
from wsgiref.util import setup_testing_defaults

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .context import SESSION_OVERRIDE_KEY
from .middleware import WSGIApp
from .response import close_iterable


@contextmanager
def rollback_session(engine: Engine, **session_kw: Any) -> Iterator[Session]:
    """Yield a session whose every change is rolled back when the block exits.

    The session joins an outer transaction with ``join_transaction_mode="create_savepoint"``,
    so commits and rollbacks made by the code under test only touch savepoints.
    """
    with engine.connect() as connection:
        outer = connection.begin()
        if connection.dialect.name == "sqlite":
            # sqlite3's legacy mode emits no BEGIN here; without one a SAVEPOINT would open
            # (and its RELEASE commit) a transaction of its own, escaping the rollback.
            dbapi_connection: Any = connection.connection.dbapi_connection
            if not dbapi_connection.in_transaction:
                connection.exec_driver_sql("BEGIN")
        session = Session(bind=connection, join_transaction_mode="create_savepoint", **session_kw)
        try:
            yield session
        finally:
            session.close()
            if outer.is_active:
                outer.rollback()


def environ_for(session: Session) -> dict[str, Any]:
    """Extra environ that makes SessionMiddleware use *session* (e.g. WebTest extra_environ)."""
    return {SESSION_OVERRIDE_KEY: session}


def run_request(
    app: WSGIApp,
    path: str = "/",
    *,
    method: str = "GET",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    session: Session | None = None,
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run one request through *app* without a server; returns (status, headers, body)."""
    path_info, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method.upper(),
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE",) else f"HTTP_{key}"] = value
    if session is not None:
        environ.update(environ_for(session))
    setup_testing_defaults(environ)
    response: dict[str, Any] = {}

    def start_response(
        status: str, response_headers: list[tuple[str, str]],
        exc_info: tuple[type[BaseException], BaseException, TracebackType] | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None and response:
            raise exc_info[1].with_traceback(exc_info[2])
        response["status"], response["headers"] = status, response_headers
        return chunks.append

    chunks: list[bytes] = []
    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close_iterable(result)
    return response["status"], response["headers"], b"".join(chunks)

"""SessionMiddleware: one SQLAlchemy session per WSGI request, committed before the response.

Order of events for a request:

1. a fresh session is made (no connection yet) and published in the environ and the context;
2. the app is called; its ``start_response``/``write`` and the first part of its body are held;
3. the transaction is committed, or rolled back when the app raised, the veto rule rejected the
   status, or the app asked for it; a failed commit becomes a 500 response;
4. only then is the server's ``start_response`` called and the held body handed over; the rest
   of a longer body streams afterwards (see :class:`~mpsqlite_wsgi.response.StreamingResponse`).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .context import SESSION_KEY, SESSION_OVERRIDE_KEY, RequestScope, activated
from .response import ResponseCapture, StartResponse, StreamingResponse, close_iterable
from .retry import RetryPolicy, capture_body, install_error_recorder

logger = logging.getLogger("mpsqlite_wsgi")

WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
CommitVeto = Callable[[dict[str, Any], str, list[tuple[str, str]]], bool]

_COMMIT_FAILED_BODY = b"Internal Server Error: the transaction could not be committed.\n"


def default_commit_veto(
    environ: dict[str, Any], status: str, headers: list[tuple[str, str]]
) -> bool:
    """Roll back (return True) for every 4xx and 5xx response."""
    return int(status.split(None, 1)[0]) >= 400


class _RetryRequest(Exception):
    """Internal: the attempt failed transiently and may be run again."""


class SessionMiddleware:
    """WSGI middleware giving each request its own session and ending it correctly.

    ``bind`` is an :class:`~sqlalchemy.engine.Engine` (sessions are made with
    ``sessionmaker(bind=engine, expire_on_commit=False)``) or any zero-argument callable that
    returns a new :class:`~sqlalchemy.orm.Session`, such as a configured ``sessionmaker``.

    Options:

    * ``commit_veto(environ, status, headers) -> bool``: True rolls the request back
      (default: status >= 400).
    * ``buffer_size``: bytes of body held back before committing (default 64 KiB); bodies up to
      that size are produced completely inside the transaction. 0 commits after the first
      non-empty chunk.
    * ``retry``: a :class:`~mpsqlite_wsgi.retry.RetryPolicy` to re-run requests that hit a
      transient database error (off by default).
    * ``raise_commit_errors``: re-raise a failed commit to the server instead of answering
      with our own 500 response.
    * ``environ_key``: where the session is published in the environ.
    """

    def __init__(
        self,
        app: WSGIApp,
        bind: Engine | Callable[[], Session],
        *,
        commit_veto: CommitVeto = default_commit_veto,
        buffer_size: int = 64 * 1024,
        retry: RetryPolicy | None = None,
        raise_commit_errors: bool = False,
        environ_key: str = SESSION_KEY,
    ) -> None:
        if buffer_size < 0:
            raise ValueError("buffer_size must be >= 0")
        self.app = app
        if isinstance(bind, Engine):
            self.session_factory: Callable[[], Session] = sessionmaker(
                bind=bind, expire_on_commit=False
            )
        elif callable(bind):
            self.session_factory = bind
        else:
            raise TypeError("bind must be an Engine or a callable returning a Session")
        self.commit_veto = commit_veto
        self.buffer_size = buffer_size
        self.retry = retry
        self.raise_commit_errors = raise_commit_errors
        self.environ_key = environ_key
        if retry is not None and retry.max_attempts > 1:
            install_error_recorder()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        policy = self.retry
        if policy is None or policy.max_attempts == 1:
            return self._attempt(environ, start_response, False)
        body = capture_body(environ, policy.max_body)
        if body is None:
            return self._attempt(environ, start_response, False)
        pristine = dict(environ)
        attempt = 1
        while True:
            environ.clear()
            environ.update(pristine)
            environ["wsgi.input"] = io.BytesIO(body)
            try:
                return self._attempt(environ, start_response, attempt < policy.max_attempts)
            except _RetryRequest as exc:
                delay = policy.delay(attempt)
                logger.info(
                    "mpsqlite_wsgi: retrying %s %s after transient error (attempt %d): %s",
                    environ.get("REQUEST_METHOD"),
                    environ.get("PATH_INFO"),
                    attempt,
                    exc.__cause__,
                )
                time.sleep(delay)
                attempt += 1

    def _transient(self, errors: Iterable[BaseException]) -> bool:
        assert self.retry is not None
        return any(isinstance(e, Exception) and self.retry.is_transient(e) for e in errors)

    def _attempt(
        self, environ: dict[str, Any], start_response: StartResponse, can_retry: bool
    ) -> Iterable[bytes]:
        scope = RequestScope(self.session_factory, environ, environ.get(SESSION_OVERRIDE_KEY))
        environ[self.environ_key] = scope.session
        capture = ResponseCapture()
        result: Iterable[bytes] | None = None
        open_result: Iterable[bytes] | None = None  # not yet closed by us
        passthrough = False
        with activated(scope):
            try:
                result = open_result = self.app(environ, capture.start_response)
                passthrough = self._is_file_wrapper(environ, result, capture)
                iterator = iter(()) if passthrough else iter(result)
                if not passthrough and capture.fill(iterator, self.buffer_size):
                    open_result = None
                    close_iterable(result)
                if capture.status is None:
                    raise RuntimeError("WSGI app returned without calling start_response")
                commit_ok = not self.commit_veto(environ, capture.status, capture.headers)
                commit_ok = commit_ok and not scope.wants_rollback()
                if not commit_ok:
                    scope.rollback()
            except BaseException as exc:
                self._abandon(scope, open_result)
                if can_retry and self._transient([exc]):
                    raise _RetryRequest() from exc
                raise
            if not commit_ok and can_retry and self._transient(scope.db_errors):
                self._abandon(scope, open_result)
                raise _RetryRequest() from scope.db_errors[-1]
            if commit_ok:
                try:
                    scope.commit()
                except Exception as exc:
                    self._abandon(scope, open_result)
                    if can_retry and self._transient([exc]):
                        raise _RetryRequest() from exc
                    return self._commit_failed(start_response, exc)
            try:
                capture.forward(start_response)
            except BaseException:
                self._abandon(scope, open_result)
                raise
            if open_result is None or passthrough:
                scope.end()
                return result if passthrough else capture.chunks
        return StreamingResponse(scope, capture.chunks, open_result, iterator, commit_ok)

    @staticmethod
    def _is_file_wrapper(
        environ: dict[str, Any], result: Iterable[bytes], capture: ResponseCapture
    ) -> bool:
        """A server file wrapper (sendfile) is passed through untouched once headers are known."""
        wrapper = environ.get("wsgi.file_wrapper")
        return (
            isinstance(wrapper, type)
            and isinstance(result, wrapper)
            and capture.status is not None
            and not capture.chunks
        )

    @staticmethod
    def _abandon(scope: RequestScope, open_result: Iterable[bytes] | None) -> None:
        """Close the app's iterable, roll back and end the session; never raises."""
        try:
            close_iterable(open_result)
        except Exception:
            logger.exception("mpsqlite_wsgi: close() of the app iterable failed")
        try:
            scope.rollback()
        except Exception:
            logger.exception("mpsqlite_wsgi: rollback failed")
        try:
            scope.end()
        except Exception:
            logger.exception("mpsqlite_wsgi: closing the session failed")

    def _commit_failed(self, start_response: StartResponse, exc: Exception) -> Iterable[bytes]:
        if self.raise_commit_errors:
            raise exc
        logger.error("mpsqlite_wsgi: commit failed; answering 500", exc_info=exc)
        start_response(
            "500 Internal Server Error",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(_COMMIT_FAILED_BODY))),
            ],
        )
        return [_COMMIT_FAILED_BODY]

"""Holding a response back until the transaction is settled, then streaming the rest.

``ResponseCapture`` stands in for the server's ``start_response``/``write`` while the app runs
and while the first part of the body is produced; ``StreamingResponse`` hands the held part and
then the remainder of the app's iterable to the server, and ends the request in ``close()``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .context import RequestScope, activated

logger = logging.getLogger("mpsqlite_wsgi")

StartResponse = Callable[..., Callable[[bytes], Any]]


class ResponseCapture:
    """Records status, headers and body chunks until ``forward`` passes them to the server."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.exc_info: Any = None
        self.chunks: list[bytes] = []
        self.size = 0
        self._server_start: StartResponse | None = None
        self._server_write: Callable[[bytes], Any] | None = None

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], Any]:
        """The ``start_response`` given to the app: held back until the commit is done."""
        if self._server_start is not None:
            # Already forwarded: the server decides (it re-raises exc_info once headers are sent).
            args = (status, headers) if exc_info is None else (status, headers, exc_info)
            self._server_write = self._server_start(*args)
            return self.write
        if self.status is not None and exc_info is None:
            raise AssertionError("start_response called a second time without exc_info")
        self.status, self.headers, self.exc_info = status, list(headers), exc_info
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write`` callable given to the app: buffered before commit, direct after."""
        if self._server_write is not None:
            self._server_write(data)
            return
        if self.status is None:
            raise AssertionError("write() called before start_response()")
        self.add(data)

    def add(self, data: bytes) -> None:
        """Hold one body chunk."""
        if data:
            self.chunks.append(data)
            self.size += len(data)

    def fill(self, iterator: Iterator[bytes], buffer_size: int) -> bool:
        """Pull chunks until the status is known and *buffer_size* bytes (at least one non-empty
        chunk) are held. Returns True when the iterator is exhausted."""
        while self.status is None or not self.chunks or self.size < buffer_size:
            try:
                chunk = next(iterator)
            except StopIteration:
                return True
            self.add(chunk)
        return False

    def forward(self, start_response: StartResponse) -> None:
        """Call the server's ``start_response`` with what the app gave us."""
        assert self.status is not None
        args: tuple[Any, ...] = (self.status, self.headers)
        if self.exc_info is not None:
            args += (self.exc_info,)
        self._server_start = start_response
        self._server_write = start_response(*args)
        self.exc_info = None

    def status_code(self) -> int:
        """The numeric part of the captured status line."""
        assert self.status is not None
        return int(self.status.split(None, 1)[0])


def close_iterable(result: Iterable[bytes] | None) -> None:
    """Call ``close()`` on an app iterable if it has one (PEP 3333)."""
    close = getattr(result, "close", None)
    if close is not None:
        close()


class StreamingResponse:
    """The iterable returned to the server when the body outlives the commit.

    Session work done while the rest of the body streams runs in a new transaction that
    ``close()`` commits when the body was sent completely, the response was not vetoed and no
    rollback was requested; otherwise (error, early close/disconnect) it is rolled back.
    """

    def __init__(
        self,
        scope: RequestScope,
        held: Iterable[bytes],
        result: Iterable[bytes],
        iterator: Iterator[bytes],
        commit_ok: bool,
    ) -> None:
        self._scope = scope
        self._held = deque(held)
        self._result = result
        self._iterator = iterator
        self._commit_ok = commit_ok
        self._complete = False
        self._failed = False
        self._closed = False

    def __iter__(self) -> StreamingResponse:
        return self

    def __next__(self) -> bytes:
        if self._held:
            return self._held.popleft()
        if self._closed or self._complete:
            raise StopIteration
        try:
            with activated(self._scope):
                return next(self._iterator)
        except StopIteration:
            self._complete = True
            raise
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        """Forward close() to the app's iterable, then settle and end the session."""
        if self._closed:
            return
        self._closed = True
        scope = self._scope
        with activated(scope):
            try:
                close_iterable(self._result)
            except BaseException:
                self._failed = True
                raise
            finally:
                self._finish(scope)

    def _finish(self, scope: RequestScope) -> None:
        try:
            ok = self._commit_ok and self._complete and not self._failed
            if ok and not scope.wants_rollback():
                scope.commit()
            else:
                scope.rollback()
        except Exception:
            logger.exception("mpsqlite_wsgi: committing work done while the body streamed failed")
            try:
                scope.rollback()
            except Exception:
                logger.exception("mpsqlite_wsgi: rollback after failed streaming commit failed")
        finally:
            scope.end()

"""Bounded retry of a whole request on transient database errors.

A request is replayed only when its body could be kept in memory (see ``RetryPolicy.max_body``),
and only before anything was handed to the server, which the middleware guarantees by
committing before it calls the server's ``start_response``.
"""

from __future__ import annotations

import io
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from .context import current_scope

if TYPE_CHECKING:
    from _typeshed.wsgi import InputStream

# SQLite primary result codes (the low byte of extended codes such as SQLITE_BUSY_SNAPSHOT).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_TRANSIENT_MESSAGES = ("database is locked", "database table is locked", "database is busy")
# SQLSTATE: serialization_failure, deadlock_detected, lock_not_available.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
# MySQL/MariaDB: lock wait timeout, deadlock.
_MYSQL_TRANSIENT_CODES = frozenset({1205, 1213})


def _is_transient_dbapi(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return True
        return isinstance(exc, sqlite3.OperationalError) and any(
            m in str(exc).lower() for m in _SQLITE_TRANSIENT_MESSAGES
        )
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(state, str) and state in _TRANSIENT_SQLSTATES:
        return True
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return bool(args) and isinstance(args[0], int) and args[0] in _MYSQL_TRANSIENT_CODES


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: SQLite busy/locked, serialization failures, deadlocks.

    SQLAlchemy wrappers are unwrapped (``.orig``) and the cause/context chain is followed, so a
    framework exception raised *from* a database error is recognised too.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, DBAPIError):
            if err.connection_invalidated:
                return True
            todo.append(err.orig)
        elif _is_transient_dbapi(err):
            return True
        todo.extend((err.__cause__, err.__context__))
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and when a request is re-run after a transient database error.

    ``max_attempts`` counts the first run (1 disables retrying); the n-th retry waits
    ``min(backoff * 2**(n-1), max_backoff)`` seconds scaled by a random factor in [0.5, 1].
    Requests with a body larger than ``max_body`` bytes are never retried.
    """

    max_attempts: int = 3
    backoff: float = 0.02
    max_backoff: float = 1.0
    max_body: int = 1024 * 1024
    is_transient: Callable[[BaseException], bool] = is_transient

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_body < 0:
            raise ValueError("backoff, max_backoff and max_body must be >= 0")

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry number *retry_number* (1 = first retry)."""
        base: float = min(self.backoff * (2 ** (retry_number - 1)), self.max_backoff)
        return base * random.uniform(0.5, 1.0)


class _ChainedInput:
    """A wsgi.input that first returns an already-read prefix, then the rest of the stream."""

    def __init__(self, prefix: bytes, rest: InputStream) -> None:
        self._prefix = io.BytesIO(prefix)
        self._rest = rest

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._prefix.read() + self._rest.read()
        data = self._prefix.read(size)
        if len(data) < size:
            data += self._rest.read(size - len(data))
        return data

    def readline(self, size: int | None = -1) -> bytes:
        line = self._prefix.readline(-1 if size is None else size)
        if line.endswith(b"\n") or (size is not None and 0 <= size <= len(line)):
            return line
        more = -1 if size is None or size < 0 else size - len(line)
        return line + self._rest.readline(more)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def capture_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """Read the request body so it can be replayed; None when it is too large to keep.

    When None is returned, ``environ['wsgi.input']`` still yields the complete body.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream: InputStream | None = environ.get("wsgi.input")
    if stream is None:
        return b""
    if environ.get("CONTENT_LENGTH") in (None, "") and environ.get("wsgi.input_terminated"):
        data = stream.read(limit + 1)
        if len(data) > limit:
            environ["wsgi.input"] = _ChainedInput(data, stream)
            return None
        return data
    if length <= 0:
        return b""
    if length > limit:
        return None
    chunks: list[bytes] = []
    remaining = length
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _record_db_error(context: Any) -> None:
    scope = current_scope()
    if scope is not None:
        scope.db_errors.append(context.original_exception)


def install_error_recorder() -> None:
    """Remember every database error raised while a request is active, on every Engine.

    Lets the middleware retry requests whose framework turned a transient error into a 500
    response (CherryPy does this) instead of letting the exception reach the middleware.
    """
    if not event.contains(Engine, "handle_error", _record_db_error):
        event.listen(Engine, "handle_error", _record_db_error)

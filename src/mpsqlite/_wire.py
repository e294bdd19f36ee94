"""The wire between a caller process and its worker processes: one definition of every message.

A message is a tuple in a length-prefixed frame on a private Unix socket
pair, encoded with marshal when it holds only SQLite's own value types (rows,
parameters: several times faster than pickle) and with pickle otherwise
(exceptions). Both sides build and read messages only through the functions
here, never by position.

Requests:
- ``exec``: run one read statement on the equivalent of caller connection
  ``con``; ``settings`` is that connection's replay state when the worker
  may not have this ``version`` of it yet.
- ``fetch``: the next chunk of the pending result.
- ``drop``: forget the pending result (no reply).
- ``forget``: close the equivalents of these caller connections.
- ``close``: close every connection and exit (no reply).

``exec`` and ``fetch`` carry ``timeout``: None, or ``(statement_timeout,
seconds left)`` of the caller's statement; the worker interrupts its
statement when the seconds left run out.

Replies are ``(status, payload)``: ``OK``, ``ERROR`` (payload: the exception)
or ``REFUSED`` (the worker cannot stand in for that connection: payload
says why; the caller runs the statement itself).
"""

from __future__ import annotations

import marshal
import pickle
import socket
import struct
from typing import Any

OP_EXEC, OP_FETCH, OP_DROP, OP_CLOSE, OP_FORGET = 1, 2, 3, 4, 5
OK, ERROR, REFUSED, NEED_SETTINGS = 0, 1, 2, 3

# Rows in the first reply: small results come back in one round trip; later
# chunks grow so large results need few round trips but stay bounded.
FIRST_ROWS = 1024
MAX_CHUNK_ROWS = 16384

_HEADER = struct.Struct("<IB")
_MARSHAL, _PICKLE = 0, 1
PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL

#: A request or reply as it crosses the wire; only the functions here read its fields.
Message = tuple[Any, ...]
#: ``(statement_timeout, seconds left)`` of the caller's statement.
Timeout = tuple[float, float]
#: How a worker opens an equivalent connection: ``(connect, entries)``, see :func:`settings`.
Settings = tuple[tuple[Any, ...], list[tuple[Any, ...]]]


# -- requests ----------------------------------------------------------------

def exec_request(con: int, version: int, settings: Settings | None, sql: str, params: Any,
                 timeout: Timeout | None = None) -> Message:
    return (OP_EXEC, con, version, settings, sql, params, timeout)


def read_exec(req: Message) -> tuple[int, int, Settings | None, str, Any, Timeout | None]:
    """``(con, version, settings, sql, params, timeout)`` of an exec request."""
    return req[1], req[2], req[3], req[4], req[5], req[6]


def fetch_request(timeout: Timeout | None = None) -> Message:
    return (OP_FETCH, timeout)


def read_fetch(req: Message) -> Timeout | None:
    """The ``timeout`` of a fetch request."""
    timeout: Timeout | None = req[1]
    return timeout


def drop_request() -> Message:
    return (OP_DROP,)


def forget_request(cons: list[int]) -> Message:
    return (OP_FORGET, cons)


def read_forget(req: Message) -> list[int]:
    cons: list[int] = req[1]
    return cons


def close_request() -> Message:
    return (OP_CLOSE,)


def op(req: Message) -> int:
    kind: int = req[0]
    return kind


# -- connection settings, as a worker replays them -----------------------------

def settings(connect: tuple[Any, ...], entries: list[tuple[Any, ...]]) -> Settings:
    """How to open an equivalent connection. ``connect`` is, for sqlite3,
    ``(target, uri, timeout, (st_dev, st_ino))`` and for another driver
    ``(args, kwargs)`` of its ``connect()``; ``entries`` are ("call", pickled
    (method, args, kwargs)) or ("sql", sql, params), in the order they were made."""
    return (connect, entries)


def read_settings(s: Settings) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    return s[0], s[1]


# -- replies -----------------------------------------------------------------

def ok(payload: Any) -> Message:
    return (OK, payload)


def error(exc: BaseException) -> Message:
    return (ERROR, encode_error(exc))


def refused(why: str) -> Message:
    return (REFUSED, why)


def need_settings() -> Message:
    return (NEED_SETTINGS, None)


def exec_result(description: Any, rows: list[Any], more: bool, cpu: float) -> Message:
    """What an exec returns: the result's description, first rows, whether more
    remain, and the worker's CPU seconds for it (the offload policy learns from it)."""
    return (description, rows, more, cpu)


def read_exec_result(payload: Message) -> tuple[Any, list[Any], bool, float]:
    return payload[0], payload[1], payload[2], payload[3]


def fetch_result(rows: list[Any], more: bool) -> Message:
    return (rows, more)


def read_fetch_result(payload: Message) -> tuple[list[Any], bool]:
    return payload[0], payload[1]


def encode_error(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a faithful stand-in of sqlite3's class."""
    try:
        pickle.loads(pickle.dumps(exc, PICKLE_PROTOCOL))
        return exc
    except Exception:
        import sqlite3

        return sqlite3.OperationalError(f"{type(exc).__name__}: {exc}")


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's SQLITE_INTERRUPT (any driver's class)."""
    return getattr(exc, "sqlite_errorcode", None) == 9 or str(exc) == "interrupted"


def exceeded(exc: BaseException, limit: float, where: str = "") -> BaseException:
    """The error for a statement that ``statement_timeout`` interrupted: ``exc``'s class
    (SQLite's ``interrupted``), and its error code, with a message that says why."""
    try:
        err = type(exc)(f"statement exceeded statement_timeout={limit:g} s and was "
                        f"interrupted{where}")
    except Exception:
        return exc
    for attr in ("sqlite_errorcode", "sqlite_errorname"):
        if hasattr(exc, attr):
            setattr(err, attr, getattr(exc, attr))
    return err


# -- framing -----------------------------------------------------------------

class ChannelClosed(EOFError):
    """The process at the other end of a channel has gone away."""


class Channel:
    """Length-prefixed messages over a connected stream socket."""

    __slots__ = ("sock", "_buf", "_chunk")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()  # bytes received beyond the last message
        # One reusable receive buffer: a fresh large one per recv() costs an mmap.
        self._chunk = memoryview(bytearray(65536))

    def send(self, obj: Any) -> None:
        try:
            data, kind = marshal.dumps(obj), _MARSHAL
        except ValueError:
            data, kind = pickle.dumps(obj, PICKLE_PROTOCOL), _PICKLE
        try:
            self.sock.sendall(_HEADER.pack(len(data), kind) + data)
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc

    def recv(self) -> Any:
        buf = self._buf
        while len(buf) < 5:
            self._fill()
        size, kind = _HEADER.unpack_from(buf)
        end = 5 + size
        if len(buf) >= end:
            with memoryview(buf) as view:
                obj = self._decode(view[5:end], kind)
            del buf[:end]
            return obj
        data = bytearray(size)  # a large message: straight into a buffer of its size
        have = len(buf) - 5
        data[:have] = buf[5:]
        buf.clear()
        with memoryview(data) as view:
            while have < size:
                have += self._recv_into(view[have:])
            return self._decode(view, kind)

    @staticmethod
    def _decode(view: memoryview, kind: int) -> Any:
        return marshal.loads(view) if kind == _MARSHAL else pickle.loads(view)

    def _recv_into(self, view: memoryview) -> int:
        try:
            n = self.sock.recv_into(view)
        except TimeoutError:
            raise  # the socket's own timeout: the peer is alive but late
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc
        if not n:
            raise ChannelClosed("connection closed by peer")
        return n

    def _fill(self) -> None:
        n = self._recv_into(self._chunk)
        self._buf += self._chunk[:n]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

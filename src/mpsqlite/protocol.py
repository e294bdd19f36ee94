"""The wire protocol between a caller process and its worker processes.

One definition of every message, used by both sides. A message is a tuple
in a length-prefixed frame on a Unix stream socket, encoded with marshal
when it holds only SQLite's own value types (rows, parameters: several
times faster than pickle) and with pickle otherwise (exceptions, converted
values). Every request is answered by exactly one reply.

Request layout: ``(op, setup, close_ids, *args)`` where ``setup`` is a list of
pool-wide setup entries the worker has not applied yet (functions, pragmas,
...) or ``None``, and ``close_ids`` lists worker-side cursors to drop first.

Reply layout: ``(True, payload)`` or ``(False, exception)``.
"""

from __future__ import annotations

import marshal
import pickle
import socket
import struct
from typing import Any

# Request opcodes.
OP_EXEC = 1  # cid, sql, params, many, begin, text_factory_key, first_rows
OP_FETCH = 2  # cid, n
OP_SCRIPT = 3  # script, commit_first
OP_END = 4  # "commit" | "rollback"
OP_CALL = 5  # method name, args: a connection method run in the worker
OP_NOP = 6  # only applies setup and close_ids
OP_CLOSE = 7  # close the database connection and exit

# Setup entry kinds: (kind, key, payload).
SETUP_CALL = "call"  # payload: pickled (method name, args) on the sqlite3 connection
SETUP_SQL = "sql"  # payload: SQL, or (SQL, parameters): connection pragma, ATTACH...
SETUP_TEXT_FACTORY = "tf"  # key: factory id, payload: pickled factory
SETUP_CONVERTER = "conv"  # payload: pickled (name, converter)

# Rows per reply: the first reply is small so point queries stay cheap; the
# following ones grow so large results need few round trips but stay bounded.
FIRST_ROWS = 256
MAX_CHUNK_ROWS = 16384

_HEADER = struct.Struct("<IB")
_MARSHAL, _PICKLE = 0, 1
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def setup_sql(payload: Any) -> tuple:
    """``execute()`` arguments of a SETUP_SQL payload."""
    return payload if isinstance(payload, tuple) else (payload,)


class ChannelClosed(EOFError):
    """The process at the other end of a channel has gone away."""


class Channel:
    """Length-prefixed messages over a connected stream socket."""

    __slots__ = ("sock", "_buf", "_chunk")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()  # bytes received beyond the last message
        # A reusable receive buffer: a fresh large one per recv() would cost
        # an mmap and page faults on every message.
        self._chunk = memoryview(bytearray(65536))

    def send(self, obj: Any) -> None:
        try:
            data, kind = marshal.dumps(obj), _MARSHAL
        except ValueError:
            data, kind = pickle.dumps(obj, _PROTOCOL), _PICKLE
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
        # A large message: receive the rest straight into a buffer of its size.
        data = bytearray(size)
        have = len(buf) - 5
        data[:have] = buf[5:]
        buf.clear()
        with memoryview(data) as view:
            while have < size:
                n = self._recv_into(view[have:])
                have += n
            return self._decode(view, kind)

    @staticmethod
    def _decode(view: memoryview, kind: int) -> Any:
        return marshal.loads(view) if kind == _MARSHAL else pickle.loads(view)

    def _recv_into(self, view: memoryview) -> int:
        try:
            n = self.sock.recv_into(view)
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


def encode_error(exc: BaseException) -> BaseException:
    """Return ``exc`` if it survives pickling, else a faithful stand-in.

    sqlite3 errors pickle with their ``sqlite_errorcode``/``sqlite_errorname``;
    arbitrary exceptions from user code may not.
    """
    try:
        pickle.loads(pickle.dumps(exc, _PROTOCOL))
        return exc
    except Exception:
        import sqlite3

        return sqlite3.OperationalError(f"{type(exc).__name__}: {exc}")

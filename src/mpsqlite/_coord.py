"""One writer queue across the processes of one host: the writer *turn* of a database file.

This module is each process's side (:class:`Turn`); the coordinator one of them hosts is
in :mod:`mpsqlite._coordinator`.

Each process keeps its own FIFO gate (:mod:`mpsqlite._gate`); the thread that takes it
also needs its process to hold the file's turn. A coordinator grants the turn, first come
first served. The first process that needs it hosts it in a thread, on a Unix socket in a
private runtime directory, named by the file's device and inode. A process gives the turn
back when none of its own writers is queued; asked for it while some are, it lets those
go first, so one hand-off serves a busy process's queue.

The socket is 0600 in a directory of mode 0700, and both ends check the peer's uid
(``SO_PEERCRED``). Messages are short ASCII lines, never pickles. The host holds a POSIX
lock on ``<name>.lock``: when its process dies the kernel drops the lock, the other
processes' links end, and the first of them that needs the turn takes over. SQLite's own
locks remain the final guard; the turn only orders mpsqlite's writers.

A process that writes alone never talks to it: it queues for the turn only from its first
sign of another process's writers (a write that waited in SQLite's busy handler, a request
that waited) until ``ENGAGE_SECONDS`` pass without one. Until then SQLite's locks alone
order it against the others, as they would without mpsqlite.

Wire: ``W <seq> <limit>`` asks for the turn (``limit``: the asker's ``max_write_seconds``,
``-`` for none); ``R <seq>`` gives it back or withdraws the request. The coordinator sends
``G <seq> <waited>`` (granted; ``waited`` 1 if others went first), ``P`` (another process
waits: pass it on) and ``X <seq>`` (taken back: the holder was asked for longer than its
limit).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ._coordinator import PEERCRED as _PEERCRED
from ._coordinator import Coordinator, host, peer_uid
from ._coordinator import after_fork_in_child as _forget_hosted

log = logging.getLogger("mpsqlite.coordinator")

#: A process queues for the turn from its first sign of other processes' writers (a
#: write that waited in SQLite's busy handler, a request that waited, a request for the
#: turn it holds) until this many seconds pass without one: alone, it pays nothing.
ENGAGE_SECONDS = 10.0
#: A transaction's first write that took longer than this probably waited for SQLite's
#: lock (its busy handler sleeps 1 ms, then 2, 5, ...).
BUSY_HINT = 0.001
#: Seconds a process whose coordinator vanished waits between tries to reach or host the
#: next one (another process may be taking over at that moment).
RETRY = 0.002
_SUN_PATH_MAX = 107
_live: weakref.WeakSet[Turn] = weakref.WeakSet()


def runtime_dir() -> str:
    """The directory for coordinator sockets: ``$MPSQLITE_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/mpsqlite``, else ``<tmp>/mpsqlite-<uid>``."""
    path = os.environ.get("MPSQLITE_RUNTIME_DIR")
    if path:
        return path
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "mpsqlite")
    return os.path.join(tempfile.gettempdir(), f"mpsqlite-{os.getuid()}")


def _private_dir(path: str) -> None:
    """Create ``path`` as 0700, or check that it is a directory of ours that nobody else
    can enter (OSError otherwise)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory", path)
    if st.st_uid != os.getuid():
        raise OSError(errno.EPERM, "owned by another user", path)
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


class _Request:
    __slots__ = ("seq", "ready", "outcome")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.ready = threading.Lock()
        self.ready.acquire()
        self.outcome = ""  # "granted", "lost" (the link ended) or "" (still waiting)


class Turn:
    """This process's side of one file's writer turn.

    Only the holder of the process's gate calls :meth:`acquire` and :meth:`release`; a
    reader thread per link takes the coordinator's messages. ``on_wanted`` is called
    (from that thread) when another process asks for the turn, ``on_revoked`` when the
    coordinator took it back.
    """

    def __init__(self, key: tuple[Any, ...], on_wanted: Callable[[], None],
                 on_revoked: Callable[[], None]) -> None:
        self.name = f"{key[0]:x}-{key[1]:x}"
        self._on_wanted = on_wanted
        self._on_revoked = on_revoked
        self._mu = threading.Lock()
        self._sock: socket.socket | None = None
        self._coordinator: Coordinator | None = None
        self._pending: _Request | None = None
        self._seq = 0
        self.held = False
        self.wanted = False  # another process asked for the turn we hold
        self.disabled: str | None = None if _PEERCRED is not None else "no SO_PEERCRED here"
        self.handoffs = 0  # grants received from the coordinator
        self._engaged_until = 0.0
        _live.add(self)

    @property
    def engaged(self) -> bool:
        """Whether this process queues for the turn now (see ENGAGE_SECONDS)."""
        return time.monotonic() < self._engaged_until

    def engage(self) -> None:
        """Other processes write this file: queue for the turn for a while."""
        if self.disabled is None:
            self._engaged_until = time.monotonic() + ENGAGE_SECONDS

    @property
    def hosting(self) -> bool:
        return self._coordinator is not None

    @property
    def linked(self) -> bool:
        return self._sock is not None or self._coordinator is not None

    def acquire(self, deadline: float, limit: float | None) -> bool:
        """Hold the turn by ``deadline`` (monotonic); False if it did not come in time.
        True at once where coordination cannot work: SQLite's locks then decide alone."""
        while True:
            if self.held:
                return True
            if self._sock is None and self._coordinator is None and not self._link(deadline):
                return self.disabled is not None
            with self._mu:
                coordinator, sock = self._coordinator, self._sock
                if coordinator is None and sock is None:
                    continue  # the link ended just now
                self._seq += 1
                request = self._pending = _Request(self._seq)  # _lost() now sees it
            if coordinator is not None:
                coordinator.want(request.seq, limit)
            elif sock is not None:
                try:
                    sock.sendall(f"W {request.seq} {'-' if limit is None else repr(limit)}\n"
                                 .encode())
                except OSError:
                    self._lost(sock)
                    continue
            request.ready.acquire(timeout=max(deadline - time.monotonic(), 0.0))
            with self._mu:
                if request.outcome == "granted":
                    return True
                if self._pending is request:
                    self._pending = None
            if request.outcome == "lost":
                continue
            self._give_back(coordinator, sock, request.seq)  # withdrawn; a late grant too
            return False

    def release(self) -> None:
        """Give the turn back to the coordinator, if we hold it (called holding the
        gate's lock: answers for this process are left to the coordinator's thread)."""
        with self._mu:
            if not self.held:
                return
            self.held = self.wanted = False
            coordinator, sock, seq = self._coordinator, self._sock, self._seq
        self._give_back(coordinator, sock, seq, flush=False)

    @staticmethod
    def _give_back(coordinator: Coordinator | None, sock: socket.socket | None, seq: int,
                   flush: bool = True) -> None:
        if coordinator is not None:
            coordinator.give_back(seq, flush)
        elif sock is not None:
            try:
                sock.sendall(f"R {seq}\n".encode())
            except OSError:
                pass  # the link ended: the coordinator forgets us with it

    def close(self) -> None:
        """Leave the queue; a coordinator hosted here stops (another process takes over)."""
        with self._mu:
            sock, self._sock = self._sock, None
            coordinator, self._coordinator = self._coordinator, None
            self.held = self.wanted = False
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if coordinator is not None:
            coordinator.stop()

    def forget(self) -> None:
        """In a forked child: never use the parent's link, turn or coordinator."""
        if self._sock is not None:
            self._sock.close()
        if self._coordinator is not None:
            self._coordinator.forget()
        self._sock = self._coordinator = self._pending = None
        self._mu = threading.Lock()
        self.held = self.wanted = False

    # -- the link --------------------------------------------------------------

    def _link(self, deadline: float) -> bool:
        """Reach the coordinator, hosting it if nobody does; False if coordination is off
        here or nobody could be reached by ``deadline``."""
        if self.disabled is not None:
            return False
        try:
            directory = runtime_dir()
            _private_dir(directory)
        except OSError as exc:
            self._disable(f"runtime directory unusable: {exc}")
            return False
        path = os.path.join(directory, self.name + ".sock")
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            self._disable(f"socket path too long: {path}")
            return False
        while True:
            sock = self._connect(path)
            if sock is not None:
                with self._mu:
                    self._sock = sock
                threading.Thread(target=self._read, args=(sock,), daemon=True,
                                 name="mpsqlite-turn").start()
                return True
            if self._host(path):
                return True
            if self.disabled is not None or time.monotonic() >= deadline:
                return False
            time.sleep(RETRY)

    def _connect(self, path: str) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            if peer_uid(sock) != os.getuid():
                raise OSError(errno.EPERM, "coordinator socket of another user", path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except OSError as exc:
            sock.close()
            self._disable(f"cannot use {path}: {exc}")
            return None

    def _host(self, path: str) -> bool:
        """Become the coordinator if no live process hosts it."""
        try:
            coordinator = host(path, self)
        except OSError as exc:
            self._disable(f"cannot host a coordinator at {path}: {exc}")
            return False
        if coordinator is not None:
            self._coordinator = coordinator
        return self._coordinator is not None

    def _disable(self, why: str) -> None:
        self.disabled = why
        log.warning("mpsqlite: writers of other processes are not coordinated (%s); "
                    "SQLite's locks alone order them", why)

    def _read(self, sock: socket.socket) -> None:
        buf = b""
        try:
            while True:
                data = sock.recv(256)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._message(line.split())
        except (OSError, ValueError, IndexError):  # ended, or not our coordinator's words
            pass
        self._lost(sock)

    def _message(self, words: list[bytes]) -> None:
        if not words:
            return
        kind = words[0]
        if kind == b"G":
            with self._mu:
                request = self._pending
                if request is None or request.seq != int(words[1]):
                    return  # withdrawn already: our R gives it back
                self._pending = None
                self.held, self.wanted = True, False
                self.handoffs += 1
                request.outcome = "granted"
                request.ready.release()
            if words[2:3] == [b"1"]:
                self.engage()
        elif kind == b"P":
            self.engage()
            if self.held:
                self.wanted = True
                self._on_wanted()
        elif kind == b"X":
            with self._mu:
                if not self.held or self._seq != int(words[1]):
                    return
                self.held = self.wanted = False
            self._on_revoked()

    def _lost(self, sock: socket.socket) -> None:
        """The link ended (its coordinator's process died or stopped it): a waiting
        request retries on a new one; a transaction under way goes on under SQLite's lock."""
        with self._mu:
            if self._sock is not sock:
                return
            self._sock = None
            self.held = self.wanted = False
            request, self._pending = self._pending, None
            if request is not None:
                request.outcome = "lost"
                request.ready.release()
        sock.close()


def _after_fork_in_child() -> None:
    _forget_hosted()
    for turn in list(_live):
        turn.forget()


def close_all() -> None:
    """At exit: stop hosted coordinators so that their sockets are removed."""
    for turn in list(_live):
        turn.close()


os.register_at_fork(after_in_child=_after_fork_in_child)

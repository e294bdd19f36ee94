"""One writer queue across the processes of one host: the writer *turn* of a database file.

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
import fcntl
import logging
import os
import selectors
import socket
import stat
import struct
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

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
_LINE_MAX = 64
_SUN_PATH_MAX = 107
_PEERCRED = getattr(socket, "SO_PEERCRED", None)  # Linux; elsewhere coordination is off
_CRED = struct.Struct("3i")  # pid, uid, gid
_live: weakref.WeakSet[Turn] = weakref.WeakSet()
# Coordinators hosted by this process, by socket path. POSIX locks belong to a process, so
# a second one here would "get" the lock of the first, and closing it would drop both.
_hosted: dict[str, Coordinator] = {}
_hosted_lock = threading.Lock()


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


def _peer_uid(sock: socket.socket) -> int:
    assert _PEERCRED is not None
    _pid, uid, _gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, _PEERCRED, _CRED.size))
    return int(uid)


class _Peer:
    """A linked process: a socket, or (``local``) the hosting process's own Turn."""

    __slots__ = ("sock", "buf", "local")

    def __init__(self, sock: socket.socket | None, local: Turn | None = None) -> None:
        self.sock = sock
        self.buf = b""
        self.local = local


class _Service:
    """The one thread that serves every coordinator this process hosts (started on the
    first), so that hosting one more file costs a socket and no thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sel: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._hosted: set[Coordinator] = set()

    def add(self, coordinator: Coordinator, listener: socket.socket) -> None:
        with self._lock:
            if self._sel is None:
                self._sel = selectors.DefaultSelector()
                self._wake_r, self._wake_w = socket.socketpair()
                self._sel.register(self._wake_r, selectors.EVENT_READ, None)
                threading.Thread(target=self._run, args=(self._sel, self._wake_r),
                                 name="mpsqlite-coordinator", daemon=True).start()
            self._hosted.add(coordinator)
            self._sel.register(listener, selectors.EVENT_READ, (coordinator, None))

    def watch(self, coordinator: Coordinator, sock: socket.socket, peer: _Peer) -> None:
        if self._sel is not None:
            self._sel.register(sock, selectors.EVENT_READ, (coordinator, peer))

    def unwatch(self, sock: socket.socket) -> None:
        try:
            if self._sel is not None:
                self._sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def remove(self, coordinator: Coordinator) -> None:
        with self._lock:
            self._hosted.discard(coordinator)

    def wake(self) -> None:
        """Recompute the revocation timers (a local request may have started one)."""
        try:
            if self._wake_w is not None:
                self._wake_w.send(b"t")
        except OSError:
            pass

    def forget(self) -> None:
        """In a forked child: the thread is gone; close what it used, say nothing."""
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self._sel is not None:
            self._sel.close()
        self.__init__()  # type: ignore[misc]

    def _run(self, sel: selectors.BaseSelector, wake: socket.socket) -> None:
        while True:
            with self._lock:
                hosted = list(self._hosted)
            deadlines = [d for c in hosted if (d := c.deadline()) is not None]
            timeout = max(min(deadlines) - time.monotonic(), 0.0) if deadlines else None
            try:
                events = sel.select(timeout)
            except (OSError, ValueError):
                return  # closed by forget() in a child, or by the interpreter at exit
            for key, _ in events:
                if key.data is None:
                    try:
                        wake.recv(64)
                    except OSError:
                        return
                    continue
                coordinator, peer = key.data
                try:
                    if peer is None:
                        coordinator._accept()
                    else:
                        coordinator._serve(peer)
                except Exception:  # never expected: that coordinator stops, others go on
                    log.exception("mpsqlite coordinator for %s failed", coordinator.sock_path)
                    coordinator.stop()
            for coordinator in hosted:
                coordinator._tick()


_service = _Service()


class Coordinator:
    """Grants one file's writer turn to the processes linked to it, in request order.

    The process's coordinator thread (:class:`_Service`) serves the other processes; the
    hosting process's own Turn calls :meth:`want` and :meth:`give_back` directly and gets
    its answers (delivered outside the state lock, in order) without a socket.
    """

    def __init__(self, sock_path: str, listener: socket.socket, lock_fd: int,
                 local: Turn) -> None:
        self.sock_path = sock_path
        self._lock = threading.Lock()  # the queue's state
        self._deliver = threading.Lock()  # one thread at a time delivers to ``local``
        self._local_out: deque[bytes] = deque()
        self.local = _Peer(None, local)
        self._listener = listener
        self._lock_fd = lock_fd
        self._ino = os.stat(sock_path).st_ino
        self._peers: dict[socket.socket, _Peer] = {}
        self._queue: deque[tuple[_Peer, int, float | None]] = deque()
        self._holder: tuple[_Peer, int, float | None] | None = None
        self._asked: float | None = None  # when the holder was asked to pass the turn on
        self._stopped = False
        self.grants = 0
        self.revoked = 0
        listener.setblocking(False)
        _service.add(self, listener)

    def stop(self) -> None:
        """End the coordinator at once: the linked processes see their link close, the
        socket and lock file are removed."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            peers = list(self._peers)
            self._peers.clear()
            self._queue.clear()
            self._holder = None
        _service.remove(self)
        for sock in [*peers, self._listener]:
            _service.unwatch(sock)
            sock.close()
        with _hosted_lock:
            try:
                if os.stat(self.sock_path).st_ino == self._ino:
                    os.unlink(self.sock_path)
                # Removed while locked: whoever opened it meanwhile sees a stale inode and
                # tries again.
                os.unlink(self.sock_path[:-len(".sock")] + ".lock")
            except OSError:
                pass
            os.close(self._lock_fd)
            if _hosted.get(self.sock_path) is self:
                del _hosted[self.sock_path]

    def want(self, seq: int, limit: float | None) -> None:
        """The hosting process asks for the turn."""
        with self._lock:
            self._want(self.local, seq, limit)
            queued = self._holder is not None and self._holder[0] is not self.local
        self._flush()
        if queued:
            _service.wake()

    def give_back(self, seq: int, flush: bool = True) -> None:
        """The hosting process gives the turn back (or withdraws its request)."""
        with self._lock:
            self._give_back(self.local, seq)
        if flush:
            self._flush()

    def deadline(self) -> float | None:
        """When the holder's time to answer runs out, if someone waits for it."""
        with self._lock:
            holder = self._holder
            if holder is None or not self._queue or self._asked is None or holder[2] is None:
                return None
            return self._asked + holder[2]

    def _flush(self) -> None:
        """Deliver what was said to the hosting process's Turn, in order, outside the state
        lock (its handlers take the gate's lock, whose holders call in here). A thread
        that finds another delivering leaves its messages to that one."""
        while self._local_out:
            if not self._deliver.acquire(blocking=False):
                return
            try:
                while True:
                    with self._lock:
                        if not self._local_out:
                            break
                        message = self._local_out.popleft()
                    turn = self.local.local
                    if turn is not None:
                        turn._message(message.split())
            finally:
                self._deliver.release()

    def forget(self) -> None:
        """In a forked child: close the parent's descriptors, say nothing on them."""
        self.local.local = None
        for sock in [*self._peers, self._listener]:
            sock.close()
        self._peers.clear()
        os.close(self._lock_fd)

    def _serve(self, peer: _Peer) -> None:
        with self._lock:
            self._read(peer)
        self._flush()

    def _tick(self) -> None:
        with self._lock:
            self._revoke_overdue()
        self._flush()

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        try:
            if _peer_uid(sock) != os.getuid():
                sock.close()
                return
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        peer = _Peer(sock)
        with self._lock:
            if self._stopped:
                sock.close()
                return
            self._peers[sock] = peer
        _service.watch(self, sock, peer)

    def _read(self, peer: _Peer) -> None:
        assert peer.sock is not None
        try:
            data = peer.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(peer)
            return
        peer.buf += data
        while b"\n" in peer.buf:
            line, peer.buf = peer.buf.split(b"\n", 1)
            if not self._handle(peer, line.split()):
                self._drop(peer)
                return
        if len(peer.buf) > _LINE_MAX:
            self._drop(peer)

    def _handle(self, peer: _Peer, words: list[bytes]) -> bool:
        """One message; False for anything that is not our protocol."""
        try:
            if words[0] == b"W" and len(words) == 3:
                seq = int(words[1])
                limit = None if words[2] == b"-" else float(words[2])
                self._want(peer, seq, limit)
                return True
            if words[0] == b"R" and len(words) == 2:
                self._give_back(peer, int(words[1]))
                return True
        except (ValueError, IndexError):
            pass
        return False

    def _want(self, peer: _Peer, seq: int, limit: float | None) -> None:
        if self._holder is not None and self._holder[0] is peer:
            self._holder = (peer, seq, limit)
            self._send(peer, f"G {seq} 0\n")
            return
        for i, (p, _, _) in enumerate(self._queue):
            if p is peer:
                self._queue[i] = (peer, seq, limit)
                return
        if self._holder is None:
            self._grant((peer, seq, limit), waited=0)
            return
        self._queue.append((peer, seq, limit))
        if self._asked is None:
            self._asked = time.monotonic()
            self._send(self._holder[0], "P\n")

    def _give_back(self, peer: _Peer, seq: int) -> None:
        if self._holder is not None and self._holder[0] is peer and self._holder[1] == seq:
            self._holder = None
            self._grant_next()
            return
        for entry in self._queue:
            if entry[0] is peer and entry[1] == seq:
                self._queue.remove(entry)
                return

    def _grant(self, entry: tuple[_Peer, int, float | None], waited: int = 1) -> None:
        self._holder, self._asked = entry, None
        self.grants += 1
        self._send(entry[0], f"G {entry[1]} {waited}\n")
        if self._queue and self._holder is entry:
            self._asked = time.monotonic()
            self._send(entry[0], "P\n")

    def _grant_next(self) -> None:
        self._asked = None
        while self._holder is None and self._queue:
            self._grant(self._queue.popleft())

    def _revoke_overdue(self) -> None:
        holder = self._holder
        if holder is None or not self._queue or self._asked is None or holder[2] is None:
            return
        if time.monotonic() - self._asked < holder[2]:
            return
        self.revoked += 1
        log.warning("mpsqlite: a process kept the writer turn of %s for more than "
                    "max_write_seconds=%g after others asked for it; passed on",
                    self.sock_path, holder[2])
        self._holder = None
        self._send(holder[0], f"X {holder[1]}\n")
        self._grant_next()

    def _send(self, peer: _Peer, message: str) -> None:
        if peer.sock is None:
            self._local_out.append(message.encode())
            return
        try:
            peer.sock.send(message.encode())
        except OSError:  # gone, or not reading at all: it loses its place
            self._drop(peer)

    def _drop(self, peer: _Peer) -> None:
        if peer.sock is None or self._peers.pop(peer.sock, None) is None:
            return
        _service.unwatch(peer.sock)
        peer.sock.close()
        self._queue = deque(e for e in self._queue if e[0] is not peer)
        if self._holder is not None and self._holder[0] is peer:
            self._holder = None
            self._grant_next()


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
            if _peer_uid(sock) != os.getuid():
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
        """Become the coordinator if no live process holds its lock."""
        with _hosted_lock:
            if path not in _hosted:
                self._host_locked(path)
        return self._coordinator is not None

    def _host_locked(self, path: str) -> None:
        lock_path = path[:-len(".sock")] + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return  # another process hosts it, or is taking over right now
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its last host removed it as we opened it: try again
            os.close(fd)
            return
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                os.unlink(path)  # its host died: we hold the lock it held
            except FileNotFoundError:
                pass
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(64)
            self._coordinator = _hosted[path] = Coordinator(path, listener, fd, self)
        except OSError as exc:
            listener.close()
            os.close(fd)
            self._disable(f"cannot host a coordinator at {path}: {exc}")

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
    global _hosted_lock
    _hosted_lock = threading.Lock()
    _hosted.clear()
    _service.forget()
    for turn in list(_live):
        turn.forget()


def close_all() -> None:
    """At exit: stop hosted coordinators so that their sockets are removed."""
    for turn in list(_live):
        turn.close()


os.register_at_fork(after_in_child=_after_fork_in_child)

"""The host side of the writer turn: the coordinator a process hosts for one database file.

:class:`Coordinator` keeps one file's queue of processes and grants the turn in request
order; one thread per process (:class:`_Service`) serves every coordinator it hosts.
:func:`host` makes this process the host, under a POSIX lock on ``<name>.lock`` that the
kernel drops when the process dies. The processes' own side, and the protocol, are in
:mod:`mpsqlite._coord`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._coord import Turn

log = logging.getLogger("mpsqlite.coordinator")

_LINE_MAX = 64
PEERCRED = getattr(socket, "SO_PEERCRED", None)  # Linux; elsewhere coordination is off
_CRED = struct.Struct("3i")  # pid, uid, gid
# Coordinators hosted by this process, by socket path. POSIX locks belong to a process, so
# a second one here would "get" the lock of the first, and closing it would drop both.
_hosted: dict[str, Coordinator] = {}
_hosted_lock = threading.Lock()


def peer_uid(sock: socket.socket) -> int:
    assert PEERCRED is not None
    _pid, uid, _gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, PEERCRED, _CRED.size))
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
            if peer_uid(sock) != os.getuid():
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


def host(path: str, local: Turn) -> Coordinator | None:
    """Host the coordinator at socket ``path`` for ``local``, unless a live process (this
    one included) hosts it already or is taking over right now. OSError where the socket
    cannot be made."""
    with _hosted_lock:
        if path in _hosted:
            return None
        lock_path = path[:-len(".sock")] + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its last host removed it as we opened it: try again
            os.close(fd)
            return None
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                os.unlink(path)  # its host died: we hold the lock it held
            except FileNotFoundError:
                pass
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(64)
            coordinator = _hosted[path] = Coordinator(path, listener, fd, local)
        except OSError:
            listener.close()
            os.close(fd)
            raise
        return coordinator


def after_fork_in_child() -> None:
    """In a forked child: host nothing the parent hosts (each Turn then forgets its own)."""
    global _hosted_lock
    _hosted_lock = threading.Lock()
    _hosted.clear()
    _service.forget()

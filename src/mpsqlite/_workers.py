"""The worker processes of one database, and the leases that lend them out.

Workers start lazily, one at a time as demand grows, with ``subprocess``
running a fresh isolated interpreter (never ``fork``: safe in a threaded
parent). A lease lends one worker to one cursor until its result is read or
dropped; a dead worker is noticed on use, reported once and replaced. A worker
that does not answer in time (``statement_timeout``) is killed and replaced.
Crashes and replacements are logged on the ``mpsqlite.workers`` logger.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

from . import _wire as w

# The worker registers a bare ``mpsqlite`` package: it needs only _worker, _wire and
# _timer, and starts some 60 ms sooner without the rest (see _worker.complete_package).
_BOOTSTRAP = (
    "import sys, types; pkg = sys.modules['mpsqlite'] = types.ModuleType('mpsqlite'); "
    "pkg.__path__ = [sys.argv[2]]; "
    "from mpsqlite._worker import main; main(int(sys.argv[1]))"
)
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
# A non-blocking look at a worker's socket (0 where the platform has no MSG_DONTWAIT).
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT if hasattr(socket, "MSG_DONTWAIT") else 0

log = logging.getLogger("mpsqlite.workers")


class WorkerDied(sqlite3.OperationalError):
    """A worker process ended while it was serving a request."""


class WorkerKilled(sqlite3.OperationalError):
    """A worker did not answer within the time its request allowed, and was killed."""

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


def _exit_text(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _shipped_path() -> list[str]:
    """The caller's import path, for unpickling the application's functions.

    The worker appends it after its own (the standard library and installed
    packages, all imported first), so nothing there can shadow them; the
    relative entries that mean "the current directory" are left out."""
    return [p for p in sys.path if isinstance(p, str) and os.path.isabs(p)]


class WorkerHandle:
    """The caller's side of one worker process."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        parent, child = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOTSTRAP, str(child.fileno()), _PKG_DIR],
                stdin=subprocess.PIPE, pass_fds=(child.fileno(),), close_fds=True,
            )
        finally:
            child.close()
        self.pid = self.proc.pid
        self.chan = w.Channel(parent)
        self.lock = threading.Lock()
        self.known: dict[int, int] = {}  # caller connection -> settings version sent
        self.forgotten: list[int] = []  # caller connections closed while this worker was busy
        self.dead = False
        self.busy = False
        self.owner: Any = None  # the caller connection being served
        self.statements = 0
        self.errors = 0
        try:
            self.chan.send({"driver": pool.driver, "sys_path": _shipped_path()})
        except w.ChannelClosed:
            pass  # it died at once: its first exchange reports that (WorkerDied)
        self._started = False

    def exchange(self, request: w.Message, owner: Any = None, wait: float | None = None) -> Any:
        """Send one request and return its reply ``(status, payload)``; a worker that has
        not replied after ``wait`` seconds is killed (WorkerKilled)."""
        with self.lock:
            if self.dead:
                raise self.pool.died(self, before=True)
            self.busy, self.owner = True, owner
            try:
                if not self._started:
                    status, payload = self.chan.recv()
                    if status != w.OK:
                        exc, payload = payload, None
                        try:
                            raise exc
                        finally:
                            del exc  # no reference cycle through this frame
                    self._started = True
                if self.forgotten:
                    keys, self.forgotten = self.forgotten, []
                    self.chan.send(w.forget_request(keys))
                    self.chan.recv()
                self.chan.send(request)
                if wait is None:
                    reply = self.chan.recv()
                else:
                    reply = self._recv_within(wait)
            except w.ChannelClosed:
                raise self.pool.died(self) from None
            finally:
                self.busy, self.owner = False, None
            self.statements += 1
            if reply[0] == w.ERROR:
                self.errors += 1
            return reply

    def _recv_within(self, wait: float) -> Any:
        sock = self.chan.sock
        sock.settimeout(max(wait, 0.001))
        try:
            return self.chan.recv()
        except TimeoutError:
            raise self.pool.overdue(self, wait) from None
        finally:
            if not self.dead:
                sock.settimeout(None)

    def send_only(self, request: w.Message) -> None:
        """Send a request that has no reply (drop); a dead worker is left to the next use."""
        with self.lock:
            if not self.dead:
                try:
                    self.chan.send(request)
                except w.ChannelClosed:
                    pass

    def interrupt(self) -> None:
        try:
            self.proc.stdin.write(b"i")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (OSError, ValueError):
            pass

    def alive(self) -> bool:
        """Whether the process runs, as far as can be seen without blocking.

        A killed worker's socket closes at once, while ``poll()`` may not see
        the exit yet."""
        if self.dead or self.proc.poll() is not None:
            return False
        if not _PEEK:
            return True
        try:
            return self.chan.sock.recv(1, _PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def stop(self, wait: float = 2.0) -> None:
        """Ask the worker to close its connections and exit, then make sure it has."""
        self.dead = True
        if self.lock.acquire(timeout=wait):
            try:
                self.chan.send(w.close_request())
            except w.ChannelClosed:
                pass
            finally:
                self.lock.release()
        self._close_pipes()
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _close_pipes(self) -> None:
        self.chan.close()
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    def forget(self) -> None:
        """Drop our file descriptors without touching the process (after fork)."""
        self.dead = True
        self._close_pipes()


class WorkerPool:
    """Up to ``size`` workers for one database, lent first come first served."""

    def __init__(self, name: str, size: int, driver: str = "sqlite3") -> None:
        self.name = name
        self.size = size
        self.driver = driver
        self._cond = threading.Condition()
        self._idle: deque[WorkerHandle] = deque()
        self.workers: list[WorkerHandle] = []
        self._starting = 0
        self._waiting = 0
        self.restarts = 0
        self._lost = 0  # workers that ended and are not replaced yet
        self.closed = False

    def lease(self, timeout: float) -> WorkerHandle | None:
        """An idle worker (one is started while fewer than ``size`` run), or None
        if none comes free within ``timeout``: the caller then runs the statement itself."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.closed:
                    return None
                while self._idle:
                    h = self._idle.popleft()
                    if h.alive():
                        return h
                    self._retire_locked(h)
                if len(self.workers) + self._starting < self.size:
                    self._starting += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting -= 1
        try:
            h = WorkerHandle(self)
        except OSError as exc:
            log.warning("cannot start an mpsqlite worker process for %s: %s", self.name, exc)
            with self._cond:
                self._starting -= 1
            return None
        with self._cond:
            self._starting -= 1
            if self.closed:
                h.stop()
                return None
            self.workers.append(h)
            replacing = self._lost > 0
            if replacing:
                self._lost -= 1
        if replacing:
            log.info("mpsqlite worker process %d started for %s, in place of one that ended",
                     h.pid, self.name)
        return h

    def release(self, h: WorkerHandle) -> None:
        """Return a lease; a worker that died meanwhile is retired."""
        with self._cond:
            if h.dead or not h.alive():
                self._retire_locked(h)
            elif self.closed:
                pass
            else:
                self._idle.append(h)
            self._cond.notify()

    def died(self, h: WorkerHandle, before: bool = False) -> WorkerDied:
        """Retire a dead worker and describe what happened to its caller."""
        try:
            code = h.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            h.proc.kill()
            code = h.proc.wait()
        with self._cond:
            self._retire_locked(h)
            self._cond.notify()
        when = "before it received the request" if before else "while serving the request"
        return WorkerDied(
            f"mpsqlite worker process {h.pid} died ({_exit_text(code)}) {when}; it only ever "
            "reads, so nothing was lost: run the statement again"
        )

    def overdue(self, h: WorkerHandle, wait: float) -> WorkerKilled:
        """Kill a worker that has not answered within ``wait`` seconds, and retire it."""
        h.dead = True
        h.proc.kill()
        h.proc.wait()
        with self._cond:
            self._retire_locked(h, f"was killed: no answer within {wait:.3g} s")
            self._cond.notify()
        return WorkerKilled(
            f"its mpsqlite worker process {h.pid} did not answer and was killed", h.pid)

    def _retire_locked(self, h: WorkerHandle, how: str | None = None) -> None:
        if h in self.workers:
            self.workers.remove(h)
            if not self.closed:
                self.restarts += 1
                self._lost += 1
                if how is None:
                    try:
                        h.proc.wait(0.2)  # its socket closed first: the exit follows
                    except subprocess.TimeoutExpired:
                        pass
                    how = "died: it " + _exit_text(h.proc.returncode)
                log.warning("mpsqlite worker process %d of %s %s; a new one starts when "
                            "needed", h.pid, self.name, how)
        if h in self._idle:
            self._idle.remove(h)
        h.dead = True
        h._close_pipes()
        if h.proc.poll() is None:
            h.proc.kill()

    def forget_connection(self, con_key: int) -> None:
        """A caller connection is closing: the workers that stood in for it close their
        equivalents now (a busy one before its next request), so that the caller's own
        connection can be the last to close and remove the WAL."""
        with self._cond:
            holders = [h for h in self.workers if h.known.pop(con_key, None) is not None]
        for h in holders:
            if h.lock.acquire(blocking=False):
                h.lock.release()
                try:
                    h.exchange(w.forget_request([con_key]))
                except WorkerDied:
                    pass
            else:
                h.forgotten.append(con_key)

    def status(self) -> list[dict[str, Any]]:
        with self._cond:
            idle = set(map(id, self._idle))
            return [
                {
                    "pid": h.pid,
                    "state": "busy" if h.busy else ("idle" if id(h) in idle else "leased"),
                    "statements": h.statements,
                    "errors": h.errors,
                }
                for h in self.workers
            ]

    @property
    def waiting(self) -> int:
        return self._waiting

    def close(self) -> None:
        """Stop every worker; they close their connections first."""
        with self._cond:
            if self.closed:
                return
            self.closed = True
            workers = list(self.workers)
            self._idle.clear()
            self._cond.notify_all()
        for h in workers:
            h.stop()

    def forget(self) -> None:
        """In a forked child: drop the parent's workers without touching them."""
        self.closed = True
        for h in self.workers:
            h.forget()

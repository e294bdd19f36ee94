"""Worker processes for one database, shared by every connection to it.

A :class:`Pool` starts its workers with ``subprocess`` running a fresh
interpreter (never ``fork``), so it is safe in an already threaded parent.
Workers are leased to callers: a read takes any idle worker for one round
trip, a transaction pins one until it ends. A dead worker is noticed at the
next use, reported to the caller it was serving and replaced.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import protocol as p
from .classify import pragma_assignment
from .durability import LEVELS, GroupSync
from .gate import WriterGate

if TYPE_CHECKING:
    from .local import LocalReads

_BOOTSTRAP = (
    "import sys; sys.path[:0] = sys.argv[2:]; "
    "from mpsqlite.worker import main; main(int(sys.argv[1]))"
)


# A non-blocking look at a worker's socket (0 where the platform has no MSG_DONTWAIT).
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT if hasattr(socket, "MSG_DONTWAIT") else 0


class WorkerDied(sqlite3.OperationalError):
    """A worker process ended while it was serving a request."""


class WorkerHandle:
    """The caller's side of one worker process."""

    __slots__ = (
        "pool", "proc", "chan", "lock", "users", "busy", "ready", "pid", "setup_applied",
        "pending_close", "statements", "errors", "dead", "current", "in_txn",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        init = pool.init_message()
        parent_sock, child_sock = socket.socketpair()
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(child_sock.fileno()), pkg_root],
                stdin=subprocess.PIPE,
                pass_fds=(child_sock.fileno(),),
                close_fds=True,
            )
        finally:
            child_sock.close()
        self.chan = p.Channel(parent_sock)
        self.lock = threading.Lock()
        self.users = 0
        self.busy = False
        self.ready = False
        self.dead = False
        self.pid = self.proc.pid
        # A fresh worker (a replacement too) applies every setup entry recorded so
        # far before its first request: functions, pragmas, ATTACH, converters.
        self.setup_applied = 0
        self.pending_close: list[int] = []
        self.statements = 0
        self.errors = 0
        self.current: Any = None
        self.in_txn = False
        self.chan.send(init)

    def exchange(self, op: int, *args: Any, owner: Any = None) -> Any:
        """Send one request and return its reply's payload; raise its error."""
        with self.lock:
            if self.dead:
                raise self.pool.died_error(self, before_send=True)
            if not self.ready:
                self._handshake()
            setup = self.pool.setup
            todo = setup[self.setup_applied :] if len(setup) > self.setup_applied else None
            closes = None
            if self.pending_close:
                closes, self.pending_close = self.pending_close, []
            self.busy, self.current = True, owner
            try:
                self.chan.send((op, todo, closes, *args))
                ok, payload, self.in_txn = self.chan.recv()
            except p.ChannelClosed:
                self.in_txn = False
                raise self.pool.died_error(self) from None
            finally:
                self.busy, self.current = False, None
            if todo:
                self.setup_applied += len(todo)
            self.statements += 1
            if not ok:
                self.errors += 1
                raise payload
            return payload

    def _handshake(self) -> None:
        try:
            ok, payload, _ = self.chan.recv()
        except p.ChannelClosed:
            raise self.pool.died_error(self) from None
        if not ok:
            self.dead = True
            self.pool.discard(self)
            raise payload
        self.ready = True

    def interrupt(self) -> None:
        """Ask the worker to interrupt its running statement."""
        try:
            self.proc.stdin.write(b"i")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (OSError, ValueError):
            pass

    def alive(self) -> bool:
        """Whether the process still runs, as far as can be seen without blocking.

        A killed worker's socket end closes at once, while ``poll()`` may not
        see the exit yet (another thread may be reaping it).
        """
        if self.dead or self.proc.poll() is not None:
            return False
        if not _PEEK:
            return True
        try:
            return self.chan.sock.recv(1, _PEEK) != b""
        except BlockingIOError:
            return True  # nothing to read: an idle worker sends nothing unasked
        except OSError:
            return False

    def stop(self, wait: float = 1.0) -> None:
        """Ask the worker to exit, then make sure it has."""
        self.dead = True
        if self.lock.acquire(timeout=wait):
            try:
                self.chan.send((p.OP_CLOSE, None, None))
            except p.ChannelClosed:
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


class _Waiter:
    """A caller queued for a worker; the releasing caller hands it one."""

    __slots__ = ("event", "worker")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.worker: WorkerHandle | None = None


class Pool:
    """A fixed-size set of workers for one database and its writer gate."""

    def __init__(
        self,
        key: tuple,
        size: int,
        *,
        driver: str,
        connect_args: tuple,
        connect_kwargs: dict[str, Any],
        max_hold: float | None,
        private: bool,
    ) -> None:
        self.key = key
        self.database = str(connect_args[0]) if connect_args else driver
        self.size = size
        self.private = private
        self.driver = driver
        self.connect_args = connect_args
        self.connect_kwargs = connect_kwargs
        self.setup: list[tuple] = []
        self._latest: dict[Any, tuple] = {}
        self._text_factories: list[tuple[Any, int]] = []
        self.gate = WriterGate(max_hold)
        self._cond = threading.Condition()
        self._idle: deque[WorkerHandle] = deque()
        self.workers: list[WorkerHandle] = []
        self._queue: deque[_Waiter] = deque()
        self.restarts = 0
        self.closed = False
        self.refs = 0
        self.local: LocalReads | None = None
        self.sync: GroupSync | None = None
        # Built once (may raise: a converter that cannot travel), so that starting
        # a replacement worker later cannot fail on it.
        self._init = self._make_init_message()
        for _ in range(size):
            w = WorkerHandle(self)
            self.workers.append(w)
            self._idle.append(w)

    def init_message(self) -> dict[str, Any]:
        """What a new worker is told first: how to connect, and the converters."""
        return self._init

    def _make_init_message(self) -> dict[str, Any]:
        from .registry import converter_blobs

        return {
            "driver": self.driver,
            "connect_args": self.connect_args,
            "connect_kwargs": self.connect_kwargs,
            "sys_path": [x for x in sys.path if isinstance(x, str)],
            "converters": converter_blobs() if self.connect_kwargs.get("detect_types") else [],
        }

    # -- leasing ----------------------------------------------------------

    def acquire(
        self, timeout: float, prefer: Callable[[], list[WorkerHandle]] | None = None
    ) -> WorkerHandle:
        """Lease an idle worker, first come first served.

        Rather than wait, a caller shares a worker that ``prefer()`` names
        (one its own connection holds already), which no one else can free.
        """
        with self._cond:
            if self.closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            if len(self.workers) < self.size:
                try:
                    self._refill_locked()
                except OSError as exc:
                    if not self.workers:
                        raise sqlite3.OperationalError(
                            f"cannot start an mpsqlite worker process: {exc}") from exc
            if not self._queue:
                while self._idle:
                    w = self._idle.popleft()
                    if w.alive():
                        w.users = 1
                        return w
                    self._replace_locked(w)  # its replacement joins the idle list
            if prefer is not None:
                for w in prefer():
                    if w.alive():
                        w.users += 1
                        return w
            waiter = _Waiter()
            self._queue.append(waiter)
        if waiter.event.wait(timeout):
            return self._claim(waiter)
        with self._cond:
            if waiter.event.is_set():
                return self._claim(waiter)
            self._queue.remove(waiter)
        raise sqlite3.OperationalError(
            f"no mpsqlite worker became free within {timeout:g} s "
            f"(pool of {self.size} for {self.database!r})"
        )

    def _claim(self, waiter: _Waiter) -> WorkerHandle:
        if waiter.worker is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return waiter.worker

    def _hand_over(self, w: WorkerHandle) -> None:
        """Give a free worker to the longest waiter, or put it on the idle list."""
        if self._queue:
            waiter = self._queue.popleft()
            w.users = 1
            waiter.worker = w
            waiter.event.set()
        else:
            self._idle.append(w)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def share(self, w: WorkerHandle) -> None:
        """Add a lease on a worker the caller already holds."""
        with self._cond:
            w.users += 1

    def release(self, w: WorkerHandle) -> None:
        """Drop one lease; a worker nobody uses goes to a waiter or the idle list."""
        with self._cond:
            w.users -= 1
            if w.users <= 0:
                w.users = 0
                if w.dead or self.closed:
                    return
                if not w.alive():
                    self._replace_locked(w)  # died while leased: its replacement goes on
                    return
                self._hand_over(w)

    # -- faults -----------------------------------------------------------

    def died_error(self, w: WorkerHandle, before_send: bool = False) -> WorkerDied:
        """Retire a dead worker, start its replacement, describe what happened."""
        try:
            code = w.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            code = w.proc.wait()
        how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else (
            f"exited with status {code}")
        self.discard(w)
        when = "before it received the request" if before_send else "while serving the request"
        return WorkerDied(
            f"mpsqlite worker process {w.pid} died ({how}) {when}; any open transaction on it "
            f"was rolled back and nothing it had not committed was saved"
        )

    def discard(self, w: WorkerHandle) -> None:
        with self._cond:
            if w in self.workers:
                self._replace_locked(w)

    def _replace_locked(self, w: WorkerHandle) -> None:
        w.dead = True
        w._close_pipes()
        if w.proc.poll() is None:
            w.proc.kill()
        try:
            w.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        if w in self.workers:
            self.workers.remove(w)
        if w in self._idle:
            self._idle.remove(w)
        if self.closed:
            return
        self.restarts += 1
        try:
            self._refill_locked()
        except OSError:
            pass  # no process could be started now: the next acquire() tries again

    def _refill_locked(self) -> None:
        """Start workers until the pool is back to its size."""
        while len(self.workers) < self.size and not self.closed:
            fresh = WorkerHandle(self)
            self.workers.append(fresh)
            self._hand_over(fresh)

    # -- setup broadcast --------------------------------------------------

    def add_setup(self, entry: tuple, key: Any = None) -> bool:
        """Record an entry every worker applies before its next request.

        With a ``key`` (what the entry sets), an entry identical to the latest
        one for that key is not recorded again, so a setting repeated by every
        new connection does not grow the list. Returns whether it was recorded.
        """
        with self._cond:
            if key is not None:
                if self._latest.get(key) == entry:
                    return False
                self._latest[key] = entry
            self.setup.append(entry)
            return True

    def is_current(self, key: Any, entry: tuple) -> bool:
        """Whether ``entry`` is already the latest recorded for ``key``."""
        return self._latest.get(key) == entry

    def config_sql(self, sql: str) -> str:
        """The SQL to run for a connection-scoped pragma (or ATTACH/DETACH).

        ``synchronous`` at FULL or above is kept by group commit (see
        :mod:`mpsqlite.durability`) while the workers themselves run at NORMAL.
        """
        if self.sync is not None:
            assignment = pragma_assignment(sql)
            if assignment is not None and assignment[0] == "synchronous":
                level = LEVELS.get(assignment[1])
                if level is not None:
                    self.sync.level = level
                    sql = "PRAGMA synchronous=NORMAL" if level >= 2 else sql
        return sql

    def text_factory_key(self, factory: Any, dump: Callable[[], bytes]) -> int:
        """A small key naming ``factory`` in every worker, registered on first use."""
        with self._cond:
            for known, key in self._text_factories:
                if known is factory:
                    return key
            key = len(self._text_factories) + 1
            self._text_factories.append((factory, key))
        self.add_setup((p.SETUP_TEXT_FACTORY, key, dump()))
        return key

    def remove_setup(self, entry: tuple) -> None:
        with self._cond:
            for key, latest in list(self._latest.items()):
                if latest == entry:
                    del self._latest[key]
            if entry in self.setup:
                index = self.setup.index(entry)
                del self.setup[index]
                for w in self.workers:
                    if w.setup_applied > index:
                        w.setup_applied -= 1

    # -- lifetime ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A snapshot of the pool for monitoring pages."""
        with self._cond:
            workers = [
                {
                    "pid": w.pid,
                    "state": "busy" if w.busy else ("pinned" if w.users else "idle"),
                    "statements": w.statements,
                    "errors": w.errors,
                }
                for w in self.workers
            ]
        return {
            "database": self.database,
            "size": self.size,
            "workers": workers,
            "waiting": self.waiting,
            "writer_waiting": self.gate.waiting,
            "writer_busy": self.gate.owner is not None,
            "statements": sum(w["statements"] for w in workers),
            "errors": sum(w["errors"] for w in workers),
            "restarts": self.restarts,
            "local_statements": self.local.statements if self.local is not None else 0,
            "commits": self.sync.commits if self.sync is not None else 0,
            "fsyncs": self.sync.fsyncs if self.sync is not None else 0,
        }

    def close(self) -> None:
        """Stop every worker; connections still open get errors from now on."""
        with self._cond:
            if self.closed:
                return
            self.closed = True
            workers = list(self.workers)
            self._idle.clear()
            while self._queue:
                self._queue.popleft().event.set()  # with no worker: they raise
        for w in workers:
            w.stop()

    def forget(self) -> None:
        """In a forked child: drop the parent's workers without touching them."""
        self.closed = True
        for w in self.workers:
            w.forget()

"""What the connections to one database file share in this process.

A :class:`Database` is identified by the file's device and inode, never by
its path, so a file deleted or replaced while connections live is a new
database to the next ``connect()``. It holds the writer gate, group commit,
the offload policy's memory and, once a statement needs one, the worker pool.
Workers of a database nobody uses any more stop after ``LINGER_SECONDS``;
one reaper thread serves every database. A few closed files without workers
stay known (``IDLE_PLAIN``), so that a connection per request does not build
its file's gate and counters again.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _coord, _later
from ._durability import GroupSync
from ._gate import WriterGate
from ._workers import WorkerPool

LINGER_SECONDS = 10.0
#: Most databases kept after their last close for their link to the writer queue of
#: other processes alone (a relink costs a millisecond or two; each link is a thread).
IDLE_LINKS = 4
#: Most databases kept after their last close with neither workers nor a link, so that a
#: connection per request finds its gate and counters instead of building them again
#: (the oldest is dropped to make room; the reaper drops them too if it runs).
IDLE_PLAIN = 8
#: Most paths whose databases were dropped that keep counters of their own (for
#: mpsqlite.metrics); those of older ones are summed under ``OTHER_PATHS``, so that a process
#: that opens a new file per job or per test does not grow without bound.
RETIRED_PATHS = 1024
OTHER_PATHS = "(other)"
_HEAVY_LIMIT = 4096
_CPUS = os.cpu_count() or 1  # the default pool size


class Database:
    """The gate, group commit, offload memory and workers of one file."""

    def __init__(self, key: tuple[Any, ...], path: str, workers: int,
                 driver: str = "sqlite3") -> None:
        self.key = key
        self.path = path
        self.driver = driver
        self.gate = WriterGate(key if driver == "sqlite3" else None)
        self.sync = GroupSync(path + "-wal", _held_by(self.gate)) if driver == "sqlite3" else None
        self.heavy: set[str] = set()  # SQL judged worth a worker
        # SQL found long in the short-read turn (mpsqlite._turn): [runs left outside, backoff]
        self.long_reads: dict[str, list[int]] = {}
        self.size = workers
        self.refs = 0
        self.idle_since = 0.0
        self._pool: WorkerPool | None = None
        self._lock = threading.Lock()
        self.local_statements = 0  # reads run in this process
        self.write_statements = 0  # statements that may write (always run in this process)
        self.offloaded = 0
        self.restarts_before = 0  # worker restarts of the pools stopped before this one

    def pool(self) -> WorkerPool:
        """The worker pool, created (without starting any worker) on first need."""
        pool = self._pool
        if pool is None or pool.closed:
            with self._lock:
                pool = self._pool
                if pool is None or pool.closed:
                    pool = self._pool = WorkerPool(self.path, self.size, self.driver)
        return pool

    @property
    def has_workers(self) -> bool:
        return self._pool is not None and not self._pool.closed and bool(self._pool.workers)

    def resize(self, workers: int) -> None:
        """A later connect() asked for another pool size: it applies from now on."""
        self.size = workers
        if self._pool is not None:
            self._pool.size = workers

    def judge(self, sql: str, heavy: bool) -> None:
        """Remember whether ``sql`` is worth a worker next time."""
        if heavy:
            if len(self.heavy) >= _HEAVY_LIMIT:
                self.heavy.clear()
            self.heavy.add(sql)
        else:
            self.heavy.discard(sql)

    @property
    def lingers(self) -> bool:
        """Worth keeping a while after its last close: it has workers, or a link to the
        writer queue of other processes."""
        return self.has_workers or self.linked

    @property
    def linked(self) -> bool:
        turn = self.gate.turn
        return turn is not None and turn.linked

    def stop(self) -> None:
        """Stop the workers and leave the cross-process writer queue."""
        self.stop_workers()
        if self.gate.turn is not None:
            self.gate.turn.close()

    def stop_workers(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is not None:
                self.restarts_before += pool.restarts
        if pool is not None:
            pool.close()

    def counters(self) -> dict[str, Any]:
        """What this database has counted since it opened; every number only grows."""
        grants, waited, waits, timeouts = self.gate.stats()
        pool, sync = self._pool, self.sync
        return {
            "caller_reads": self.local_statements,
            "caller_writes": self.write_statements,
            "worker_reads": self.offloaded,
            "writer_grants": grants,
            "writer_wait_seconds": waited,
            "writer_waits": waits,
            "writer_timeouts": timeouts,
            "commits": sync.commits if sync is not None else 0,
            "fsyncs": sync.fsyncs if sync is not None else 0,
            "worker_restarts": self.restarts_before + (pool.restarts if pool is not None else 0),
            "writer_turns": turn.handoffs if (turn := self.gate.turn) is not None else 0,
        }

    def gauges(self) -> dict[str, int]:
        """What this database is doing now: queues, the gate, workers alive and busy."""
        pool, turn = self._pool, self.gate.turn
        workers = pool.status() if pool is not None and not pool.closed else []
        return {
            "writer_queue": self.gate.waiting,
            "writer_busy": int(self.gate.held),
            "workers_alive": len(workers),
            "workers_busy": sum(1 for x in workers if x["state"] == "busy"),
            "workers_max": self.size,
            "reads_waiting": pool.waiting if pool is not None else 0,
            "writer_turn_held": int(turn is not None and turn.held),
        }

    def status(self) -> dict[str, Any]:
        pool = self._pool
        workers = pool.status() if pool is not None else []
        sync = self.sync
        return {
            "database": self.path,
            "size": self.size,
            "workers": workers,
            "waiting": pool.waiting if pool is not None else 0,
            "writer_waiting": self.gate.waiting,
            "writer_busy": self.gate.held,
            "writer_grants": self.gate.grants,
            "writer_wait_seconds": self.gate.waited,
            "local_statements": self.local_statements,
            "offloaded_statements": self.offloaded,
            "statements": sum(x["statements"] for x in workers),
            "errors": sum(x["errors"] for x in workers),
            "restarts": pool.restarts if pool is not None else 0,
            "commits": sync.commits if sync is not None else 0,
            "fsyncs": sync.fsyncs if sync is not None else 0,
            "heavy_statements": len(self.heavy),
        }


def _held_by(gate: WriterGate) -> Callable[[], bool]:
    return lambda: gate.held


def add_counters(into: dict[str, Any], more: dict[str, Any]) -> None:
    """Add one :meth:`Database.counters` to a running total (lists add by position)."""
    for name, value in more.items():
        if isinstance(value, list):
            have = into.setdefault(name, [0] * len(value))
            for i, v in enumerate(value):
                have[i] += v
        else:
            into[name] = into.get(name, 0) + value


def _same_file(path: str, key: tuple[Any, ...]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == key


class _Registry:
    """The process's databases, with one reaper thread for idle workers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.databases: dict[tuple[Any, ...], Database] = {}
        self._wake = threading.Condition(self.lock)
        self._reaper: threading.Thread | None = None
        self._reaper_due = 0.0  # when the reaper wakes by itself next
        self.pid = os.getpid()
        # Counters of the databases dropped so far, summed by path, the most recent
        # RETIRED_PATHS of them (the rest under OTHER_PATHS): with the live ones they make
        # totals that never go back (mpsqlite.metrics).
        self.retired: dict[str, dict[str, Any]] = {}

    def _drop(self, db: Database) -> None:
        """Forget ``db`` (called holding the lock), keeping its counters in ``retired``."""
        del self.databases[db.key]
        if db.sync is not None:
            db.sync.close()
        retired = self.retired
        counters = retired.pop(db.path, None) or {}
        add_counters(counters, db.counters())
        retired[db.path] = counters  # the most recent last
        if len(retired) > RETIRED_PATHS + (OTHER_PATHS in retired):
            oldest = next(path for path in retired if path != OTHER_PATHS)
            other = retired.pop(OTHER_PATHS, {})
            add_counters(other, retired.pop(oldest))
            retired[OTHER_PATHS] = other

    def acquire(self, key: tuple[Any, ...], path: str, workers: int | None,
                driver: str) -> Database:
        with self.lock:
            db = self.databases.get(key)
            if db is not None and db.refs == 0 and db.driver == "sqlite3" and (
                    db.path != path and not _same_file(db.path, key)):  # key is at path now
                # Its file was deleted after the last close and the inode number reused
                # by a new file: the lingering workers hold nothing of the new one.
                self._drop(db)
                threading.Thread(target=db.stop, daemon=True).start()
                db = None
            if db is None:
                db = Database(key, path, workers or _CPUS, driver)
                self.databases[key] = db
            elif db.refs == 0 and not db.has_workers:
                db.resize(workers or _CPUS)  # kept idle, not open: sized as a new one
            elif workers is not None and workers != db.size:
                db.resize(workers)
            db.refs += 1
            return db

    def release(self, db: Database) -> None:
        with self.lock:
            db.refs -= 1
            if db.refs > 0:
                return
            db.idle_since = time.monotonic()
            if db.sync is not None:
                db.sync.close()  # SQLite has probably removed the WAL
            if self.databases.get(db.key) is not db:
                return
            excess = []
            for keep, linked in ((IDLE_LINKS, True), (IDLE_PLAIN, False)):
                if len(self.databases) <= keep:
                    continue  # too few in all for this kind to overflow
                idle = [d for d in self.databases.values()
                        if d.refs == 0 and not d.has_workers and d.linked is linked]
                excess += sorted(idle, key=lambda d: d.idle_since)[:max(len(idle) - keep, 0)]
            for old in excess:
                self._drop(old)
            # Only what lingers needs the reaper: an idle plain entry just waits to be
            # reused or pushed out, with no thread woken at its close.
            if db.lingers:
                if self._reaper is None or not self._reaper.is_alive():
                    self._reaper = threading.Thread(
                        target=self._reap, name="mpsqlite-reaper", daemon=True)
                    self._reaper.start()
                elif db.idle_since + LINGER_SECONDS < self._reaper_due:
                    self._wake.notify()  # sooner than it would wake (LINGER_SECONDS fell)
        for old in excess:
            old.stop()  # outside the lock

    def _reap(self) -> None:
        with self.lock:
            while True:
                now = time.monotonic()
                due = [db for db in self.databases.values()
                       if db.refs == 0 and now - db.idle_since >= LINGER_SECONDS]
                for db in due:
                    self._drop(db)
                if due:
                    self.lock.release()
                    try:
                        for db in due:
                            db.stop()
                    finally:
                        self.lock.acquire()
                    continue
                waits = [LINGER_SECONDS - (now - db.idle_since)
                         for db in self.databases.values() if db.refs == 0]
                if not waits:
                    self._reaper = None
                    return
                wait = max(min(waits), 0.01)
                self._reaper_due = now + wait
                self._wake.wait(wait)

    def status(self) -> list[dict[str, Any]]:
        with self.lock:
            dbs = [db for db in self.databases.values() if db.refs or db.lingers]
        return [db.status() for db in dbs]

    def shutdown(self) -> None:
        _later.run()
        with self.lock:
            dbs = list(self.databases.values())
            dropped = [db for db in dbs if db.refs == 0]
            for db in dropped:
                self._drop(db)
        for db in dbs:
            db.stop() if db in dropped else db.stop_workers()

    def after_fork_in_child(self) -> None:
        """A forked child never uses its parent's workers or gate state."""
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._reaper = None
        self._reaper_due = 0.0
        self.pid = os.getpid()
        for db in self.databases.values():
            pool = db._pool
            if pool is not None:
                pool.forget()
            db._pool = None
            db._lock = threading.Lock()
            db.gate = WriterGate(db.key if db.driver == "sqlite3" else None)
            if db.sync is not None:
                db.sync.forget()
                db.sync = GroupSync(db.sync.wal_path, _held_by(db.gate))
        self.databases.clear()
        self.retired = {}


registry = _Registry()


def pool_status() -> list[dict[str, Any]]:
    """One status dict per database this process has open (or whose workers linger)."""
    _later.run()
    return registry.status()


#: Stands for a connection collected while it held the writer gate (its weak reference is
#: dead by the time its release runs).
GONE = object()


def let_go(db: Database, key: int, gate_holder: Any) -> None:
    """What a connection holds of ``db``, given back: the writer gate where ``gate_holder``
    (the connection, or GONE) holds it, its state on the workers, its reference."""
    if gate_holder is not None:
        db.gate.release(gate_holder)
    if db.has_workers:
        db.pool().forget_connection(key)
    registry.release(db)


def shutdown() -> None:
    """Stop every worker process; open connections go on, in the calling process."""
    registry.shutdown()


os.register_at_fork(after_in_child=registry.after_fork_in_child)
atexit.register(_coord.close_all)
atexit.register(shutdown)

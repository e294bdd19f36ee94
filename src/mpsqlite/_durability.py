"""Group commit: durable commits that share one fsync.

Under ``PRAGMA synchronous=FULL`` (SQLite's default) every commit waits for
its own fsync of the WAL, so concurrent writers queue on the disk. mpsqlite
runs file connections at ``synchronous=NORMAL`` (a commit is written to the
WAL, atomic and consistent, but not flushed) and makes ``commit()`` return
only after an fsync of the WAL that began after the commit was written.
Writers that commit while one fsync runs all share the next one.

The price: another connection can read a committed transaction a moment
before its ``commit()`` returns. A process crash loses nothing either way;
only a power loss in that moment could take back what a reader has seen.
``connect(..., group_commit=False)`` keeps SQLite's own behaviour.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import Any

_FDATASYNC = hasattr(os, "fdatasync")  # what SQLite itself calls on Linux
#: Longest a leader waits for the writers in the gate before it fsyncs.
MAX_DELAY = 0.001
#: A leader waits at all only where the last fsync took this long or more: on a fast disk
#: the wait costs more switches between threads than the fsyncs it saves, on a slow one
#: it lets one fsync cover the writers woken by the last (docs/benchmarks.md).
SLOW_FSYNC = 0.001
#: A WAL larger than this at a group fsync has been starved of checkpoints by readers
#: that never pause; the committing connection then waits for them and truncates it.
WAL_RESTART_BYTES = 16 << 20
# What a commit() that raises here must say: SQLite has committed the transaction already.
_COMMITTED = "; the transaction was committed (others can read it) but may not survive a power loss"


class _Waiter:
    """A commit waiting for an fsync: ``ready`` is released once, when the commit is
    covered or when the waiter must lead the next fsync."""

    __slots__ = ("mine", "ready", "lead")

    def __init__(self, mine: int) -> None:
        self.mine = mine
        self.ready = threading.Lock()
        self.ready.acquire()
        self.lead = False


class GroupSync:
    """Makes commits durable, many per fsync of one database's WAL file.

    One committer at a time leads: it fsyncs for everyone who committed before the
    fsync began, wakes exactly those, and hands the lead to the oldest one left. Each
    waiter wakes once. ``writing()`` says whether other writers are about to commit
    (the writer gate is held); where the last fsync took ``SLOW_FSYNC`` or more, the
    leader then waits for them, up to ``MAX_DELAY``, so that one fsync covers them too.
    """

    def __init__(self, wal_path: str, writing: Callable[[], bool] = lambda: False) -> None:
        self.wal_path = wal_path
        self._writing = writing
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._waiters: deque[_Waiter] = deque()
        self._last = 0.0  # how long the last fsync took
        self._gathering = False
        self._requested = 0
        self._leading = False
        self.fsyncs = 0
        self.commits = 0
        self.wal_size = 0  # at the last fsync
        self.restarting = False  # a connection is checkpointing an overgrown WAL
        # The WAL kept open between fsyncs (an open, fstat and close per fsync cost about
        # 45 us a commit here). Only the leader uses it; close() while one leads leaves
        # the closing to the leader.
        self._fd: int | None = None
        self._close_after = False

    def wait_durable(self) -> None:
        """Return once everything committed before this call is on disk."""
        with self._lock:
            self._requested += 1
            self.commits += 1
            if self._leading:
                waiter = _Waiter(self._requested)
                self._waiters.append(waiter)
                if self._gathering:
                    self._arrived.notify()
            else:
                self._leading = True
                waiter = None
        if waiter is not None:
            waiter.ready.acquire()
            if not waiter.lead:
                return
        self._lead()

    def _lead(self) -> None:
        """fsync for every commit so far, wake those it covers, pass the lead on."""
        with self._lock:
            if self._last >= SLOW_FSYNC and self._writing():
                self._gather()
            target = self._requested
        start = time.monotonic()
        try:
            synced = self._fsync()
        except BaseException:
            with self._lock:
                self._drop_fd()
                self._pass_lead()  # another waiter tries again; this commit reports the error
            raise
        with self._lock:
            self._last = time.monotonic() - start
            self.fsyncs += synced
            if self._close_after:
                self._close_after = False
                self._drop_fd()
            waiters = self._waiters
            while waiters and waiters[0].mine <= target:
                waiters.popleft().ready.release()
            self._pass_lead()

    def _pass_lead(self) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.lead = True
            waiter.ready.release()
        else:
            self._leading = False

    def _gather(self) -> None:
        """Wait, briefly, for the writers in flight to commit (called holding the lock)."""
        deadline = time.monotonic() + MAX_DELAY
        self._gathering = True
        try:
            while self._writing():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._arrived.wait(remaining)
        finally:
            self._gathering = False

    def close(self) -> None:
        """Let the WAL go (its database's last connection closed, or the database is
        forgotten); the next fsync opens it again."""
        with self._lock:
            if self._leading:
                self._close_after = True
            else:
                self._drop_fd()

    def forget(self) -> None:
        """In a forked child: close the parent's descriptor, which no thread here uses."""
        self._drop_fd()

    def _drop_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open(self) -> int | None:
        """The WAL at its path now, kept in ``_fd``; None where there is none."""
        try:
            self._fd = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise sqlite3.OperationalError(
                f"cannot open {self.wal_path} to sync: {exc}{_COMMITTED}") from exc
        return self._fd

    def _fsync(self) -> bool:
        """fsync the WAL; False where there is none (all checkpointed, synced, removed).

        The descriptor stays valid while the process has a connection open: each holds a
        shared lock on the database file from its first read (connect reads), and SQLite
        removes the WAL only under an exclusive one. What else replaces the WAL here (a
        change of journal mode) calls close(). Its size comes from lseek: an fstat, of the
        descriptor or the path, made the next fdatasync about 45 us slower on ext4."""
        try:
            fd = self._fd if self._fd is not None else self._open()
            if fd is None:
                return False
            os.fdatasync(fd) if _FDATASYNC else os.fsync(fd)
            self.wal_size = os.lseek(fd, 0, os.SEEK_END)
            return True
        except OSError as exc:
            raise sqlite3.OperationalError(
                f"disk I/O error syncing {self.wal_path}: {exc}{_COMMITTED}") from exc


def _immutable_file(database: Any, uri: bool) -> str | None:
    """The file an ``immutable=1`` URI names, as SQLite reads it; None for anything else."""
    if not uri:
        return None
    try:
        name = os.fsdecode(database)
    except TypeError:
        return None
    if not name.startswith("file:"):
        return None
    path, _, query = name[5:].partition("#")[0].partition("?")
    if path.startswith("//"):
        authority, slash, rest = path[2:].partition("/")
        if authority not in ("", "localhost"):
            return None  # SQLite refuses it
        path = slash + rest
    flag = "0"
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if urllib.parse.unquote(key) == "immutable":
            flag = urllib.parse.unquote(value).lower()
    path = urllib.parse.unquote(path)
    return path if path and flag in ("1", "yes", "true", "on") else None


def checkpoint_for_immutable(database: Any, uri: bool) -> None:
    """Before an ``immutable=1`` connection opens a file: copy its WAL into it.

    SQLite reads an immutable file without its WAL. sqlite3 would have written the
    commits of a rollback-journal file into the file itself; mpsqlite switched it to WAL,
    where they wait for a checkpoint. A passive one takes no lock that writers wait for;
    where it cannot run (read-only media, a reader's old snapshot), the reader sees the
    file as it is, as SQLite would show it."""
    path = _immutable_file(database, uri)
    if path is None:
        return
    try:
        if os.path.getsize(path + "-wal") == 0:
            return
        con = sqlite3.connect(f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=rw",
                              uri=True, timeout=0, factory=sqlite3.Connection)
    except (OSError, sqlite3.Error):
        return
    try:
        con.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error:
        pass
    finally:
        con.close()

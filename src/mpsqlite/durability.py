"""Group commit: durable commits that share one fsync.

Under ``PRAGMA synchronous=FULL`` (SQLite's default) every commit waits for
its own fsync of the WAL, so concurrent writers queue on the disk. mpsqlite
runs its workers at ``synchronous=NORMAL`` (commits are written to the WAL,
atomic and consistent, but not yet flushed) and makes ``commit()`` return only
after an fsync of the WAL that began after the commit was written. Writers
that commit while one fsync is running all share the next one.

The price: another connection can read a committed transaction a moment
before its ``commit()`` returns. A process crash loses nothing either way;
only a power loss in that moment could take back data a reader has seen.
Pass ``group_commit=False`` to ``connect`` for SQLite's own behaviour.
"""

from __future__ import annotations

import os
import sqlite3
import threading

LEVELS = {"0": 0, "off": 0, "1": 1, "normal": 1, "2": 2, "full": 2, "3": 3, "extra": 3}


class GroupSync:
    """Makes commits durable, many per fsync of the database's WAL file."""

    def __init__(self, wal_path: str) -> None:
        self.wal_path = wal_path
        self.level = 2
        self._cond = threading.Condition()
        self._requested = 0
        self._synced = 0
        self._syncing = False
        self.fsyncs = 0
        self.commits = 0

    def wait_durable(self) -> None:
        """Return once everything committed before this call is on disk."""
        if self.level < 2:
            return
        with self._cond:
            self._requested += 1
            self.commits += 1
            mine = self._requested
            while self._synced < mine:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                target = self._requested
                self._cond.release()
                try:
                    self._fsync()
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._synced = max(self._synced, target)
                self.fsyncs += 1

    def _fsync(self) -> None:
        try:
            fd = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return  # no WAL: the last commit was checkpointed and the file removed
        except OSError as exc:
            raise sqlite3.OperationalError(f"cannot open {self.wal_path} to sync: {exc}") from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            message = f"disk I/O error syncing {self.wal_path}: {exc}"
            raise sqlite3.OperationalError(message) from exc
        finally:
            os.close(fd)

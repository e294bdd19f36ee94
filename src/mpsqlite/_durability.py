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


class GroupSync:
    """Makes commits durable, many per fsync of one database's WAL file."""

    def __init__(self, wal_path: str) -> None:
        self.wal_path = wal_path
        self._cond = threading.Condition()
        self._requested = 0
        self._synced = 0
        self._syncing = False
        self.fsyncs = 0
        self.commits = 0

    def wait_durable(self) -> None:
        """Return once everything committed before this call is on disk."""
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
                synced = False
                try:
                    synced = self._fsync()
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._synced = max(self._synced, target)
                self.fsyncs += synced

    def _fsync(self) -> bool:
        """fsync the WAL; False where there is none (all checkpointed, synced, removed)."""
        try:
            fd = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise sqlite3.OperationalError(f"cannot open {self.wal_path} to sync: {exc}") from exc
        try:
            os.fsync(fd)
            return True
        except OSError as exc:
            raise sqlite3.OperationalError(
                f"disk I/O error syncing {self.wal_path}: {exc}") from exc
        finally:
            os.close(fd)

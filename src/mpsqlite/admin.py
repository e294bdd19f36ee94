"""Connection methods that work on the whole database: dump, serialize, backup."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import protocol as p

if TYPE_CHECKING:
    from .pool import Pool, WorkerHandle


class WholeDatabaseMixin:
    """iterdump, serialize, backup, and the methods mpsqlite cannot offer."""

    _pool: Pool
    _lock: threading.RLock
    _txn: WorkerHandle | None
    _timeout: float

    def _check(self) -> None:
        raise NotImplementedError

    def _call(self, name: str, *args: Any) -> Any:
        raise NotImplementedError

    def iterdump(self) -> Iterator[str]:
        """SQL text that recreates the database, as sqlite3's iterdump."""
        yield from self._call("iterdump")

    def serialize(self, *, name: str = "main") -> bytes:
        """The database as bytes (SQLite's serialize)."""
        return self._call("serialize", name)

    def backup(
        self,
        target: Any,
        *,
        pages: int = -1,
        progress: Callable[[int, int, int], object] | None = None,
        name: str = "main",
        sleep: float = 0.250,
    ) -> None:
        """Copy the database into ``target``, a sqlite3 or mpsqlite connection."""
        self._check()
        if not isinstance(target, (sqlite3.Connection, WholeDatabaseMixin)):
            raise TypeError(
                "backup() argument 'target' must be sqlite3.Connection or mpsqlite.Connection"
            )
        if target is self:
            raise sqlite3.ProgrammingError("target cannot be the same connection instance")
        with tempfile.TemporaryDirectory(prefix="mpsqlite-backup-") as tmp:
            path = os.path.join(tmp, "copy.db")
            self._call("backup_to_file", path, name)
            if isinstance(target, WholeDatabaseMixin):
                target._restore(path)
                return
            source = sqlite3.connect(path)
            try:
                source.backup(target, pages=pages, progress=progress, sleep=sleep)
            finally:
                source.close()

    def _restore(self, path: str) -> None:
        self._check()
        with self._lock:
            if self._txn is not None:
                self._txn.exchange(p.OP_CALL, "restore_from_file", (path,), owner=self)
                return
            self._pool.gate.acquire(self, self._timeout)
            try:
                self._call("restore_from_file", path)
            finally:
                self._pool.gate.release(self)

    def blobopen(self, *args: Any, **kwargs: Any) -> Any:
        """Not available: a blob handle cannot outlive one round trip to a worker."""
        raise sqlite3.NotSupportedError("mpsqlite does not support blobopen()")

    def deserialize(self, data: bytes, /, *, name: str = "main") -> None:
        """Not available: it would replace the database in one worker only."""
        raise sqlite3.NotSupportedError("mpsqlite does not support deserialize()")

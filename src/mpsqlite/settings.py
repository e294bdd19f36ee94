"""What identifies a pool and how to start one, from connect()'s arguments."""

from __future__ import annotations

import itertools
import os
import sqlite3
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import protocol as p
from .durability import GroupSync
from .local import LocalReads
from .pool import Pool

LEGACY_TRANSACTION_CONTROL: int = getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1)

_private_ids = itertools.count(1)


def _is_private(database: str, uri: bool) -> bool:
    """Databases that exist inside one connection and cannot be shared by processes."""
    if database in ("", ":memory:"):
        return True
    if uri and database.startswith("file:"):
        parts = urlsplit(database)
        query = parse_qs(parts.query)
        return parts.path in ("", ":memory:") or query.get("mode", [""])[-1] == "memory"
    return False


def _read_only(database: str, uri: bool) -> bool:
    if not uri:
        return False
    mode = parse_qs(urlsplit(database).query).get("mode", [""])[-1]
    return mode == "ro" or "immutable=1" in database


@dataclass(frozen=True)
class PoolSettings:
    """Everything a pool's workers need to open the database the same way."""

    key: tuple
    size: int
    private: bool
    wal: bool
    driver: str
    connect_args: tuple
    connect_kwargs: tuple
    max_hold: float | None
    local_reads: bool
    group_commit: bool

    @classmethod
    def build(
        cls,
        database: Any,
        timeout: float,
        detect_types: int,
        cached_statements: int,
        uri: bool,
        workers: int | None,
        wal: bool,
        max_write_seconds: float | None,
        local_reads: bool,
        group_commit: bool,
        driver: str,
        driver_kwargs: dict[str, Any] | None,
    ) -> PoolSettings:
        if isinstance(database, (bytes, os.PathLike)):
            database = os.fsdecode(database)
        if not isinstance(database, str):
            raise TypeError(
                f"expected str, bytes or os.PathLike object, not {type(database).__name__}"
            )
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive integer, not {workers!r}")
        if max_write_seconds is not None and max_write_seconds <= 0:
            raise ValueError("max_write_seconds must be positive or None")
        if driver == "sqlite3":
            private = _is_private(database, uri)
            if not private and not uri:
                database = os.path.abspath(database)
            kwargs: dict[str, Any] = {
                "timeout": timeout,
                "detect_types": detect_types,
                "cached_statements": cached_statements,
                "uri": uri,
            }
        else:
            private = False
            kwargs = dict(driver_kwargs or {})
        size = 1 if private else (workers or os.cpu_count() or 1)
        frozen = tuple(sorted(kwargs.items()))
        key_kwargs = tuple(kv for kv in frozen if kv[0] != "timeout")
        key: tuple = (driver, database, key_kwargs)
        if private:
            key = ("private", next(_private_ids))
        return cls(
            key=key,
            size=size,
            private=private,
            wal=wal and driver == "sqlite3" and not private and not _read_only(database, uri),
            driver=driver,
            connect_args=(database,),
            connect_kwargs=frozen,
            max_hold=max_write_seconds,
            local_reads=local_reads,
            group_commit=group_commit and not uri,
        )

    def make_pool(self) -> Pool:
        """Start the pool; a file database is switched to WAL first, once."""
        if self.wal:
            con = sqlite3.connect(
                self.connect_args[0], timeout=dict(self.connect_kwargs)["timeout"],
                uri=dict(self.connect_kwargs)["uri"],
            )
            try:
                con.execute("PRAGMA journal_mode=WAL").fetchall()
            finally:
                con.close()
        pool = Pool(
            self.key,
            self.size,
            driver=self.driver,
            connect_args=self.connect_args,
            connect_kwargs=dict(self.connect_kwargs),
            max_hold=self.max_hold,
            private=self.private,
        )
        if self.wal and self.group_commit:
            pool.sync = GroupSync(self.connect_args[0] + "-wal")
            pool.add_setup((p.SETUP_SQL, None, "PRAGMA synchronous=NORMAL"))
        if self.wal and self.local_reads:
            kw = dict(self.connect_kwargs)
            pool.local = LocalReads(
                pool, self.connect_args[0], kw["uri"], kw["detect_types"], kw["timeout"]
            )
        return pool

"""Fixtures for the core tests: run one test body against sqlite3 and against mpsqlite."""

from __future__ import annotations

import importlib
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

#: Worker processes per mpsqlite pool in these tests: more than one, so that
#: statements really can land on different processes, but cheap on 2 cores.
POOL_WORKERS = 2


@pytest.fixture(scope="session", autouse=True)
def _shutdown_mpsqlite_pools() -> Iterator[None]:
    """Stop every mpsqlite pool once the session ends, if mpsqlite was imported."""
    yield
    module = sys.modules.get("mpsqlite")
    if module is not None and hasattr(module, "shutdown"):
        module.shutdown()


@pytest.fixture(params=["sqlite3", "mpsqlite"])
def dbapi(request: pytest.FixtureRequest) -> ModuleType:
    """The DB-API module under test: the stdlib sqlite3 (reference) or mpsqlite."""
    return importlib.import_module(request.param)


@pytest.fixture
def mpsqlite() -> ModuleType:
    """The mpsqlite module, for tests of behaviour that only mpsqlite has."""
    return importlib.import_module("mpsqlite")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Path of a fresh (not yet created) SQLite database file."""
    return tmp_path / "test.db"


def _live_pool_databases(module: ModuleType) -> set[str] | None:
    """Databases of the live mpsqlite pools, or None for sqlite3."""
    if module.__name__ != "mpsqlite":
        return None
    return {status["database"] for status in module.pool_status()}


def _stop_pools_of_this_test(module: ModuleType, before: set[str] | None) -> None:
    """Stop the pools this test started, when no older pool would be stopped with them.

    File pools outlive their connections (until shutdown()); without this every test
    would leave its pool's worker processes running until the session ends."""
    if before is None:
        return
    if not before & _live_pool_databases(module):
        module.shutdown()


def _connector(module: ModuleType, default_path: Path) -> Iterator[Callable[..., Any]]:
    """Yield a connect function for ``module`` that closes every connection it made."""
    made: list[Any] = []
    before = _live_pool_databases(module)

    def _connect(database: str | Path | None = None, **kwargs: Any) -> Any:
        target = default_path if database is None else database
        if module.__name__ == "mpsqlite":
            kwargs.setdefault("workers", POOL_WORKERS)
        conn = module.connect(str(target), **kwargs)
        made.append(conn)
        return conn

    yield _connect
    for conn in reversed(made):
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - teardown must close the rest
            pass
    _stop_pools_of_this_test(module, before)


@pytest.fixture
def connect(dbapi: ModuleType, db_path: Path) -> Iterator[Callable[..., Any]]:
    """Function ``connect(database=None, **kwargs)`` opening ``db_path`` with the module
    under test (mpsqlite gets ``workers=2``); all connections are closed at teardown."""
    yield from _connector(dbapi, db_path)


@pytest.fixture
def mp_connect(mpsqlite: ModuleType, db_path: Path) -> Iterator[Callable[..., Any]]:
    """Like ``connect`` but always mpsqlite, for the mpsqlite-only test modules."""
    yield from _connector(mpsqlite, db_path)


@pytest.fixture
def conn(connect: Callable[..., Any]) -> Any:
    """An open connection to ``db_path`` with the module under test."""
    return connect()


@pytest.fixture
def observer(db_path: Path) -> Iterator[sqlite3.Connection]:
    """An independent stdlib sqlite3 connection to ``db_path`` that sees only committed data."""
    other = sqlite3.connect(str(db_path), timeout=0, isolation_level=None)
    yield other
    other.close()

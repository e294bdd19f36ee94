"""Fixtures for the sqlalchemy_mpsqlite tests: engines on real files under tmp_path.

``suite/`` holds SQLAlchemy's compliance suite, whose pytest plugin takes over
a whole session; it is collected only in the subprocess started by
test_compliance_suite.py, which sets ``MPSQLITE_SQLA_SUITE=1``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("MPSQLITE_SQLA_SUITE") != "1":
    collect_ignore = ["suite"]

#: Worker processes per pool in these tests: several, so statements really can
#: land on different processes, but cheap on a 2-core machine.
WORKERS = 3


def _live_pools() -> set[str]:
    import mpsqlite

    return {status["database"] for status in mpsqlite.pool_status()}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Path of a fresh SQLite database file."""
    return tmp_path / "app.db"


@pytest.fixture
def make_engine(db_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_engine(query="", **create_engine_kwargs)`` for ``sqlite+mpsqlite`` on db_path.

    ``workers`` defaults to WORKERS; every engine is disposed at teardown and the
    worker pools this test started are stopped (unless an older pool would stop too).
    """
    from sqlalchemy import create_engine

    before = _live_pools()
    engines: list[Any] = []

    def _make(query: str = "", path: Path | None = None, **kwargs: Any) -> Any:
        if "workers=" not in query:
            query = f"workers={WORKERS}" + (f"&{query}" if query else "")
        engine = create_engine(f"sqlite+mpsqlite:///{path or db_path}?{query}", **kwargs)
        engines.append(engine)
        return engine

    yield _make
    for engine in engines:
        engine.dispose()
    if not before & _live_pools():
        import mpsqlite

        mpsqlite.shutdown()


@pytest.fixture
def engine(make_engine: Callable[..., Any]) -> Any:
    """A default ``sqlite+mpsqlite`` engine on db_path."""
    return make_engine()


@pytest.fixture
def pool_of(db_path: Path) -> Callable[..., dict[str, Any]]:
    """``pool_of(path=db_path)``: the mpsqlite pool_status() entry of that database file."""
    import mpsqlite

    def _status(path: Path | None = None) -> dict[str, Any]:
        wanted = str(path or db_path)
        for status in mpsqlite.pool_status():
            if status["database"] == wanted:
                return status
        raise AssertionError(f"no live mpsqlite pool for {wanted}")

    return _status

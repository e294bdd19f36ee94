"""Engine fixtures for the mpsqlite_wsgi tests.

``engine`` is parametrised over the database URLs: stock ``sqlite://`` always,
``sqlite+mpsqlite://`` once ``import sqlalchemy_mpsqlite`` works and the dialect connects, and
PostgreSQL (through psycopg 3) when MPSQLITE_WSGI_TEST_POSTGRES_URL names a server; without it
the PostgreSQL cases skip and say so, unless MPSQLITE_REQUIRE_POSTGRES=1 (CI) makes them fail.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from _wsgi_support import Base
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

POSTGRES_ENV = "MPSQLITE_WSGI_TEST_POSTGRES_URL"
REQUIRE_ENV = "MPSQLITE_REQUIRE_POSTGRES"


@cache
def _mpsqlite_problem(probe_dir: str) -> str | None:
    """None when the sqlite+mpsqlite dialect imports and connects, else why not."""
    try:
        import sqlalchemy_mpsqlite  # noqa: F401
    except Exception as exc:
        return f"import sqlalchemy_mpsqlite failed: {exc!r}"
    problem = _no_answer(f"sqlite+mpsqlite:///{probe_dir}/app.db?workers=2")
    return problem and f"sqlite+mpsqlite does not connect: {problem}"


def _no_answer(url: str) -> str | None:
    """None when an engine on ``url`` answers ``select 1``, else what went wrong."""
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        return repr(exc)
    return None


@cache
def _postgres_problem() -> str | None:
    """None when the server named by POSTGRES_ENV answers, else why the tests cannot run."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        return (f"no PostgreSQL: set {POSTGRES_ENV}=postgresql+psycopg://USER:PASSWORD@HOST/DB "
                "to run these cases too (see docs/postgresql.md)")
    problem = _no_answer(url)
    return problem and f"PostgreSQL at {POSTGRES_ENV} does not connect: {problem}"


def _params() -> list:
    return [pytest.param(kind, id=kind) for kind in ("sqlite", "mpsqlite", "postgresql")]


@pytest.fixture(scope="session")
def mpsqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database file for all sqlite+mpsqlite tests (emptied by ``engine`` for each)."""
    return tmp_path_factory.mktemp("mpsqlite_wsgi")


@pytest.fixture(params=_params())
def db_kind(request: pytest.FixtureRequest, mpsqlite_dir: Path) -> str:
    if request.param == "mpsqlite":
        problem = _mpsqlite_problem(str(mpsqlite_dir))
        if problem:
            pytest.skip(problem)
    if request.param == "postgresql":
        problem = _postgres_problem()
        if problem and os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {problem}", pytrace=False)
        if problem:
            pytest.skip(problem)
    return request.param


def make_engine(kind: str, path: Path, **kw) -> Engine:
    """A new Engine of *kind* on the database file under *path* (or the PG server)."""
    if kind == "sqlite":
        return create_engine(f"sqlite:///{path}/app.db", **kw)
    if kind == "mpsqlite":
        return create_engine(f"sqlite+mpsqlite:///{path}/app.db?workers=2", **kw)
    return create_engine(os.environ[POSTGRES_ENV], **kw)


@pytest.fixture
def engine(db_kind: str, tmp_path: Path, mpsqlite_dir: Path) -> Iterator[Engine]:
    """A new Engine (no listeners) on an empty database with the test tables created.

    stock sqlite gets a new file per test; sqlite+mpsqlite reuses one file (emptied here)."""
    eng = make_engine(db_kind, mpsqlite_dir if db_kind == "mpsqlite" else tmp_path)
    Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    yield eng
    if db_kind != "sqlite":
        Base.metadata.drop_all(eng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A stock sqlite:// engine for SQLite-specific behaviour (locks, savepoints)."""
    eng = create_engine(f"sqlite:///{tmp_path}/app.db")
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()

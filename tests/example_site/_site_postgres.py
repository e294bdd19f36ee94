"""PostgreSQL for the example-site tests: the server from MPSQLITE_SITE_TEST_POSTGRES_URL.

Each test gets its own scratch database on that server (made with ``CREATE DATABASE``, so the
URL's role needs CREATEDB), dropped afterwards. Without the variable the PostgreSQL cases skip
and say how to enable them; with MPSQLITE_REQUIRE_POSTGRES=1 (CI) they fail instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

SITE_ENV = "MPSQLITE_SITE_TEST_POSTGRES_URL"
REQUIRE_ENV = "MPSQLITE_REQUIRE_POSTGRES"

_names = itertools.count()


@cache
def _problem() -> str | None:
    """None when the server named by SITE_ENV answers, else why the tests cannot run."""
    url = os.environ.get(SITE_ENV)
    if not url:
        return (f"no PostgreSQL: set {SITE_ENV}=postgresql+psycopg://USER:PASSWORD@HOST/DB "
                "(a role with CREATEDB) to run these cases too (see docs/postgresql.md)")
    try:
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {SITE_ENV} does not connect: {exc!r}"
    return None


def server_url() -> URL:
    """The URL of SITE_ENV; skips the test where there is no server (fails under REQUIRE_ENV)."""
    problem = _problem()
    if problem and os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {problem}", pytrace=False)
    if problem:
        pytest.skip(problem)
    return make_url(os.environ[SITE_ENV])


def _admin(url: URL, sql: str) -> None:
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


@contextmanager
def scratch_database(prefix: str, template: str | None = None) -> Iterator[URL]:
    """A new database on the server (a copy of ``template`` if given); dropped on exit."""
    base = server_url()
    name = f"{prefix}_{os.getpid()}_{next(_names)}"
    copy = f" TEMPLATE {template}" if template else ""
    _admin(base, f"CREATE DATABASE {name}{copy}")
    try:
        yield base.set(database=name)
    finally:
        _admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class PostgresDb:
    """Reads a PostgreSQL database behind the app's back, taking the tests' sqlite3-style SQL.

    The example-site tests pass it where they would pass the SQLite file: ``_site_support``'s
    readers call :meth:`rows`."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self._engine = create_engine(url, poolclass=NullPool)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """All rows of ``sql`` (``?`` placeholders, as for sqlite3), in a new connection."""
        driver_sql = sql.replace("%", "%%").replace("?", "%s")
        with self._engine.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(driver_sql, tuple(params))]

    def dispose(self) -> None:
        """Close what the reader holds (nothing between calls: it does not pool)."""
        self._engine.dispose()

    def __str__(self) -> str:
        return self.url.render_as_string(hide_password=True)

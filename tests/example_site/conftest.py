"""Fixtures for the example site: a small seeded SQLite file per test, served by WebTest.

The seeded file is built once per session with stock sqlite3 and copied for every test, so each
test starts from the same known data; ``engine`` runs every test on stock ``sqlite://`` and on
``sqlite+mpsqlite://``, and the tests of :data:`POSTGRES_MODULES` on PostgreSQL too (a database
copied from a seeded template per test; see ``_site_postgres``). On PostgreSQL ``db_path`` is
that database's :class:`PostgresDb`, which ``_site_support``'s readers take in place of a file.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # example_site is run from the checkout, not installed
    sys.path.insert(0, str(ROOT))

import cherrypy  # noqa: E402
from _site_postgres import PostgresDb, scratch_database  # noqa: E402
from _site_support import SCALE, WORKERS  # noqa: E402
from sqlalchemy import Engine  # noqa: E402
from webtest import TestApp  # noqa: E402

from example_site import make_app  # noqa: E402
from example_site.db import make_engine  # noqa: E402
from example_site.seed import seed  # noqa: E402

cherrypy.config.update({"log.screen": False, "checker.on": False})

#: Test modules whose ``engine`` cases also run on PostgreSQL (pages, forms, the JSON API).
POSTGRES_MODULES = frozenset({"test_site_pages", "test_site_forms"})


def _argnames(mark: pytest.Mark) -> list[str]:
    names = mark.args[0]
    return [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test using ``engine`` on each backend, unless it parametrises ``engine`` itself."""
    if "engine" not in metafunc.fixturenames:
        return
    if any("engine" in _argnames(m) for m in metafunc.definition.iter_markers("parametrize")):
        return
    kinds = ["sqlite", "mpsqlite"]
    if metafunc.module.__name__ in POSTGRES_MODULES:
        kinds.append("postgresql")
    metafunc.parametrize("engine", kinds, indirect=True)


def _engine_kind(request: pytest.FixtureRequest) -> str:
    callspec = getattr(request.node, "callspec", None)
    return callspec.params.get("engine", "sqlite") if callspec else "sqlite"


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded database file built once; tests get copies of it."""
    path = tmp_path_factory.mktemp("seed") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    seed(engine, SCALE)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A PostgreSQL database seeded once like ``seeded_template``; tests get copies of it."""
    with scratch_database("mpsqlite_site_template") as url:
        engine = make_engine(url.render_as_string(hide_password=False), pool_size=1)
        seed(engine, SCALE)
        engine.dispose()
        yield url.database


@pytest.fixture
def postgres_db(request: pytest.FixtureRequest) -> Iterator[PostgresDb]:
    """A fresh PostgreSQL copy of the seeded data for this test (skips without a server)."""
    template = request.getfixturevalue("postgres_template")
    with scratch_database("mpsqlite_site", template=template) as url:
        db = PostgresDb(url)
        yield db
        db.dispose()


@pytest.fixture
def db_path(request: pytest.FixtureRequest, seeded_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the seeded database for this test (its PostgresDb on PostgreSQL)."""
    if _engine_kind(request) == "postgresql":
        return request.getfixturevalue("postgres_db")
    path = tmp_path / "shop.db"
    shutil.copyfile(seeded_template, path)
    return path


def engine_url(kind: str, path: Path) -> str:
    """The engine URL of ``kind`` ("sqlite" or "mpsqlite") for the file ``path``."""
    if kind == "mpsqlite":
        return f"sqlite+mpsqlite:///{path}?workers={WORKERS}"
    return f"sqlite:///{path}"


@pytest.fixture
def engine(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Engine]:
    """The site's engine on the test's database, through stock sqlite3, mpsqlite or psycopg."""
    if request.param == "postgresql":
        url = db_path.url.render_as_string(hide_password=False)
    else:
        url = engine_url(request.param, db_path)
    eng = make_engine(url, pool_size=4)
    yield eng
    eng.dispose()
    if request.param == "mpsqlite":
        import mpsqlite

        mpsqlite.shutdown()


@pytest.fixture
def app(engine: Engine) -> TestApp:
    """The whole WSGI stack (counters, session middleware, CherryPy) under WebTest."""
    return TestApp(make_app(engine, secret=b"test-secret"))

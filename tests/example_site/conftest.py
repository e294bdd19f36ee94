"""Fixtures for the example site: a small seeded SQLite file per test, served by WebTest.

The seeded file is built once per session with stock sqlite3 and copied for every test, so each
test starts from the same known data; ``engine`` runs every test on stock ``sqlite://`` and on
``sqlite+mpsqlite://``.
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
from _site_support import SCALE, WORKERS  # noqa: E402
from sqlalchemy import Engine  # noqa: E402
from webtest import TestApp  # noqa: E402

from example_site import make_app  # noqa: E402
from example_site.db import make_engine  # noqa: E402
from example_site.seed import seed  # noqa: E402

cherrypy.config.update({"log.screen": False, "checker.on": False})


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


@pytest.fixture
def db_path(seeded_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the seeded database for this test."""
    path = tmp_path / "shop.db"
    shutil.copyfile(seeded_template, path)
    return path


def engine_url(kind: str, path: Path) -> str:
    """The engine URL of ``kind`` ("sqlite" or "mpsqlite") for the file ``path``."""
    if kind == "mpsqlite":
        return f"sqlite+mpsqlite:///{path}?workers={WORKERS}"
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "mpsqlite"])
def engine(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Engine]:
    """The site's engine on the test's database, through stock sqlite3 or mpsqlite."""
    eng = make_engine(engine_url(request.param, db_path), pool_size=4)
    yield eng
    eng.dispose()
    if request.param == "mpsqlite":
        import mpsqlite

        mpsqlite.shutdown()


@pytest.fixture
def app(engine: Engine) -> TestApp:
    """The whole WSGI stack (counters, session middleware, CherryPy) under WebTest."""
    return TestApp(make_app(engine, secret=b"test-secret"))

#!/usr/bin/env python3
"""Alembic's own test suite through SQLAlchemy: ``sqlite://`` vs ``sqlite+mpsqlite://``.

    python tools/ecosystem/run_alembic.py [--version 1.20.1] [--side both] [PYTEST_ARGS ...]

Downloads Alembic's sdist from PyPI (it ships tests/, conftest.py and the
setup.cfg whose [sqla_testing] and [db] sections SQLAlchemy's pytest plugin
reads), installs it editable with ``mpsqlite[sqlalchemy]`` (our dialect,
entry point ``sqlite.mpsqlite``) into <cache>/venvs/alembic-VERSION and runs,
with the sdist as cwd::

    python -m pytest -p eco_pytest_recorder --dburi URL --timeout S \
        --maxfail 1000000 -p no:cacheprovider tests/

URL is ``sqlite:///<cache>/db/alembic/stock/alembic.db`` on the stock side and
``sqlite+mpsqlite:///<cache>/db/alembic/mpsqlite/alembic.db`` on the other:
both FILE databases (Alembic's own [db] default is ``sqlite:///:memory:``).
--dburi replaces that default, so every test that is for the default
database runs on the given one.  ``--maxfail`` lifts the ``--maxfail=100`` of
Alembic's pytest addopts, which would stop the mpsqlite side early.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402

URLS = {"stock": "sqlite:///{db}/alembic.db", "mpsqlite": "sqlite+mpsqlite:///{db}/alembic.db"}
TEST_DEPS = ["pytest>8,<10", "pytest-timeout", "tzdata", "black", "zimports"]


def main() -> int:
    p = _eco.common_args(__doc__.splitlines()[0], default_timeout=1200)
    p.add_argument("--version", help="Alembic release (default: the latest on PyPI)")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments / test paths "
                   "(default: tests/)")
    a = p.parse_args()
    version = a.version or _eco.latest_version("alembic")
    tree = _eco.sdist_tree("alembic", version)
    if not (tree / "tests" / "conftest.py").exists():
        raise SystemExit(f"{tree} has no tests/conftest.py: this sdist ships no test suite")
    py = _eco.ensure_venv(
        f"alembic-{version}",
        [["-e", f"{_eco.REPO}[sqlalchemy]"], ["-e", f"{tree}[tz]"], TEST_DEPS],
        fresh=a.fresh,
    )
    targets = a.pytest_args or ["tests/"]
    _eco.run_pytest_sides("alembic", "Alembic", py, tree, a, URLS, targets, version)
    if not a.no_compare:
        _eco.compare("alembic")
    return 0


if __name__ == "__main__":
    sys.exit(main())

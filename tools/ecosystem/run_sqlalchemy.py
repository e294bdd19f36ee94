#!/usr/bin/env python3
"""SQLAlchemy's own engine and SQLite-dialect tests: ``sqlite://`` vs ``sqlite+mpsqlite://``.

    python tools/ecosystem/run_sqlalchemy.py [--version 2.1.9] [--side both] [PYTEST_ARGS ...]

Downloads SQLAlchemy's sdist (default: the version installed in this
checkout's .venv, else the latest on PyPI; the sdist ships test/, its
conftest.py and the setup.cfg whose [sqla_testing] and [db] sections the
testing plugin reads), installs it editable (pure Python,
``DISABLE_SQLALCHEMY_CEXT=1``; the suite's conftest puts the sdist's lib/ first
on sys.path anyway) with its ``asyncio`` extra, mpsqlite editable and the test
deps into <cache>/venvs/sqlalchemy-VERSION and runs, in one process (no xdist),
with the sdist as cwd::

    python -m pytest -p eco_pytest_recorder --dburi URL --timeout S \
        --maxfail 1000000 -p no:cacheprovider test/engine test/dialect/sqlite

URL is ``sqlite:///<cache>/db/sqlalchemy/stock/stock.db`` on the stock side and
``sqlite+mpsqlite:///<cache>/db/sqlalchemy/mpsqlite/mp.db`` on the other: both
FILE databases (the [db] default is ``sqlite:///:memory:``).  ``--maxfail``
lifts the ``--maxfail=250`` of SQLAlchemy's pytest addopts.  The suite's
requirements are SQLAlchemy's own ``test.requirements:DefaultRequirements``
(not our dialect's requirements.py), so a few tests gated on
``sqlite+pysqlite`` are skipped on the mpsqlite side.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402

URLS = {"stock": "sqlite:///{db}/stock.db", "mpsqlite": "sqlite+mpsqlite:///{db}/mp.db"}
TEST_DEPS = ["pytest>=7.0.0,<10", "pytest-timeout", "typing-extensions>=4.13.0rc1"]
DEFAULT_TARGETS = ["test/engine", "test/dialect/sqlite"]


def installed_version() -> str | None:
    """SQLAlchemy's version in this checkout's .venv, if there is one."""
    py = _eco.REPO / ".venv" / "bin" / "python"
    if not py.exists():
        return None
    out = subprocess.run([str(py), "-m", "pip", "show", "sqlalchemy",
                          "--disable-pip-version-check"], capture_output=True, text=True)
    m = re.search(r"^Version:\s*(\S+)", out.stdout, re.M)
    return m.group(1) if m else None


def main() -> int:
    p = _eco.common_args(__doc__.splitlines()[0], default_timeout=1800)
    p.add_argument("--version", help="SQLAlchemy release (default: the one in .venv, "
                   "else the latest on PyPI)")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments / test paths "
                   f"(default: {' '.join(DEFAULT_TARGETS)})")
    a = p.parse_args()
    version = a.version or installed_version() or _eco.latest_version("sqlalchemy")
    tree = _eco.sdist_tree("sqlalchemy", version)
    if not (tree / "test" / "conftest.py").exists():
        raise SystemExit(f"{tree} has no test/conftest.py: this sdist ships no test suite")
    py = _eco.ensure_venv(
        f"sqlalchemy-{version}",
        [["-e", f"{tree}[asyncio]"], ["-e", str(_eco.REPO)], TEST_DEPS],
        fresh=a.fresh,
        pip_env={"DISABLE_SQLALCHEMY_CEXT": "1"},
    )
    targets = a.pytest_args or DEFAULT_TARGETS
    _eco.run_pytest_sides("sqlalchemy", "SQLAlchemy", py, tree, a, URLS, targets, version)
    if not a.no_compare:
        _eco.compare("sqlalchemy")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""pandas' own SQL tests, ``pandas/tests/io/test_sql.py``: stock sqlite3 vs mpsqlite.

    python tools/ecosystem/run_pandas.py [--version 3.1.1] [--side both] [PYTEST_ARGS ...]

pandas' wheel ships its test suite, so nothing is built: pandas (the wheel from
PyPI), mpsqlite editable with SQLAlchemy (``mpsqlite[sqlalchemy]``) and the test
deps go into <cache>/venvs/pandas-VERSION, and pytest runs the installed test
module with the outcome recorder, in an empty folder (no pytest configuration of
ours applies). The wheel leaves out the data files (``iris.csv``): pandas'
``--no-strict-data-files`` skips the tests that read them, on both sides::

    python eco_launch.py [--alias-sqlite3] <venv>/bin/pytest -p eco_pytest_recorder \
        --timeout S -p no:cacheprovider --no-strict-data-files \
        <site-packages>/pandas/tests/io/test_sql.py

On the mpsqlite side the sqlite3 alias (README.md) gives mpsqlite to pandas'
``import sqlite3`` and to SQLAlchemy's stock pysqlite dialect (``from sqlite3
import dbapi2``). The suite's ``sqlite_str``/``sqlite_engine``/``sqlite_conn``
fixtures are SQLAlchemy engines on temporary FILES, where mpsqlite's gate, group
commit and offload apply; its ``sqlite_buildin*`` fixtures are DB-API connections
to ``:memory:``, where mpsqlite is sqlite3 itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402

TEST_DEPS = ["pytest>=8,<10", "pytest-timeout", "hypothesis"]
TARGET = "pandas.tests.io.test_sql"


def main() -> int:
    p = _eco.common_args(__doc__.splitlines()[0], default_timeout=1200)
    p.add_argument("--version", help="pandas release (default: the latest on PyPI)")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (default: none; "
                   f"the target is always {TARGET})")
    a = p.parse_args()
    version = a.version or _eco.latest_version("pandas")
    py = _eco.ensure_venv(
        f"pandas-{version}",
        [["-e", f"{_eco.REPO}[sqlalchemy]"], [f"pandas=={version}"], TEST_DEPS],
        fresh=a.fresh,
    )
    # A path, not --pyargs: pytest then loads pandas' conftest.py (which defines
    # --no-strict-data-files) before it parses the options.
    target = subprocess.run([py, "-c", f"import {TARGET} as m; print(m.__file__)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    _eco.run_alias_pytest_sides("pandas", "pandas", py, a,
                                ["--no-strict-data-files", *a.pytest_args, target], version)
    if not a.no_compare:
        _eco.compare("pandas")
    return 0


if __name__ == "__main__":
    sys.exit(main())

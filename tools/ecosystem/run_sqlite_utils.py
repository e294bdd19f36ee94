#!/usr/bin/env python3
"""sqlite-utils' own test suite (library and CLI): stock sqlite3 vs mpsqlite.

    python tools/ecosystem/run_sqlite_utils.py [--version 4.2.1] [--side both] [PYTEST_ARGS ...]

sqlite-utils' sdist ships ``tests/``. It is unpacked under <cache>/src, installed
editable with mpsqlite (editable) and the test deps into
<cache>/venvs/sqlite-utils-VERSION, and pytest runs ``tests/`` from the tree with
the outcome recorder::

    python eco_launch.py [--alias-sqlite3] <venv>/bin/pytest -p eco_pytest_recorder \
        --timeout S -p no:cacheprovider tests/

On the mpsqlite side the sqlite3 alias (README.md) gives mpsqlite to sqlite-utils'
``import sqlite3`` (``sqlite_utils.utils`` falls back to it when ``pysqlite3`` is
not installed, as here). Most of the library's tests use ``Database(memory=True)``,
where mpsqlite is sqlite3 itself; the CLI tests (click's ``CliRunner``, in the same
process) and the ``db_path`` fixtures use files in pytest's ``tmp_path``, where the
gate, group commit and offload apply.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402

TEST_DEPS = ["pytest>=8,<10", "pytest-timeout", "hypothesis", "cogapp"]


def main() -> int:
    p = _eco.common_args(__doc__.splitlines()[0], default_timeout=1200)
    p.add_argument("--version", help="sqlite-utils release (default: the latest on PyPI)")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments / test paths "
                   "(default: tests/)")
    a = p.parse_args()
    version = a.version or _eco.latest_version("sqlite-utils")
    tree = _eco.sdist_tree("sqlite_utils", version)
    if not (tree / "tests" / "conftest.py").exists():
        raise SystemExit(f"{tree} has no tests/conftest.py: this sdist ships no test suite")
    py = _eco.ensure_venv(
        f"sqlite-utils-{version}",
        [["-e", str(_eco.REPO)], ["-e", str(tree)], TEST_DEPS],
        fresh=a.fresh,
    )
    _eco.run_alias_pytest_sides("sqlite_utils", "sqlite-utils", py, a,
                                a.pytest_args or ["tests/"], version, cwd=tree)
    if not a.no_compare:
        _eco.compare("sqlite_utils")
    return 0


if __name__ == "__main__":
    sys.exit(main())

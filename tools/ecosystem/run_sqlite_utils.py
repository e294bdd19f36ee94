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

if __name__ == "__main__":
    sys.exit(_eco.sdist_pytest_main(
        __doc__, "sqlite_utils", "sqlite-utils",
        ["pytest>=8,<10", "pytest-timeout", "hypothesis", "cogapp"], ["tests/"]))

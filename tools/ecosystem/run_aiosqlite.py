#!/usr/bin/env python3
"""aiosqlite's own test suite: stock sqlite3 vs mpsqlite.

    python tools/ecosystem/run_aiosqlite.py [--version 0.22.1] [--side both] [PYTEST_ARGS ...]

aiosqlite runs each connection on a thread of its own and hands it every call
from the event loop; its tests use database files in temporary directories. Its
sdist ships ``aiosqlite/tests`` (unittest's ``IsolatedAsyncioTestCase``), which
pytest collects, from the tree, with the outcome recorder::

    python eco_launch.py [--alias-sqlite3] <venv>/bin/pytest -p eco_pytest_recorder \
        --timeout S -p no:cacheprovider aiosqlite/tests/smoke.py

``perf.py`` (timings) is left out. On the mpsqlite side the sqlite3 alias
(README.md) gives mpsqlite to aiosqlite's ``import sqlite3`` and to its tests'.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402

if __name__ == "__main__":
    sys.exit(_eco.sdist_pytest_main(
        __doc__, "aiosqlite", "aiosqlite", ["pytest>=8,<10", "pytest-timeout"],
        ["aiosqlite/tests/smoke.py"], tests="aiosqlite/tests"))

#!/usr/bin/env python3
"""DiskCache's own test suite: stock sqlite3 vs mpsqlite.

    python tools/ecosystem/run_diskcache.py [--version 5.6.3] [--side both] [PYTEST_ARGS ...]

DiskCache keeps a cache (``Cache``, ``FanoutCache``, ``Deque``, ``Index``) in SQLite
files shared by threads and processes: a connection per thread, ``isolation_level
=None`` with its own ``BEGIN IMMEDIATE``, WAL and ``synchronous=NORMAL`` set by
itself, and its own retry on ``database is locked``. Its sdist ships ``tests/``,
run from the tree with the outcome recorder::

    python eco_launch.py [--alias-sqlite3] <venv>/bin/pytest -p eco_pytest_recorder \
        --timeout S -p no:cacheprovider tests/ --ignore tests/test_djangocache.py

``test_djangocache.py`` needs a ``tests/settings.py`` the sdist leaves out; Django
is installed for ``test_doctest.py``, which imports ``diskcache.djangocache``. On the
mpsqlite side the sqlite3 alias (README.md) gives mpsqlite to DiskCache's
``import sqlite3``; every cache is a file in a temporary directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402

if __name__ == "__main__":
    sys.exit(_eco.sdist_pytest_main(
        __doc__, "diskcache", "diskcache", ["pytest>=8,<10", "pytest-timeout", "django>=4.2,<6"],
        ["tests/", "--ignore", "tests/test_djangocache.py"]))

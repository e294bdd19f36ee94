#!/usr/bin/env python3
"""Datasette's own test suite: stock sqlite3 vs mpsqlite.

    python tools/ecosystem/run_datasette.py [--source GIT_DIR] [--ref REF] [--side both]
                                            [PYTEST_ARGS ...]

Datasette is a threaded ASGI application on sqlite3: it runs its queries on a pool
of threads (``num_sql_threads``), one connection per thread and database, with
``check_same_thread=False``, ``uri=True`` paths (``?mode=ro``, ``?immutable=1``),
progress handlers as query time limits, and a separate write thread. Its PyPI
sdists ship ``tests/`` without ``conftest.py`` and ``fixtures.py``, so the suite
comes from a git snapshot of github.com/simonw/datasette: ``--source`` (a git
dir), else $MPSQLITE_ECO_DATASETTE_SRC, else /work/.mirror/simonw+datasette/repo
(where the session's fetch tool puts it), exported at ``--ref`` (default HEAD).
Datasette is installed from that same tree, with its ``dev`` test dependencies,
and pytest runs ``tests/`` from the tree in one process (no xdist)::

    python eco_launch.py [--alias-sqlite3] <venv>/bin/pytest -p eco_pytest_recorder \
        --timeout S -p no:cacheprovider -p no:xdist tests/

On the mpsqlite side the sqlite3 alias (README.md) gives mpsqlite to Datasette's
``import sqlite3`` (``pysqlite3`` first, not installed here) and to sqlite-utils'.
Most of the suite's databases are files made by its fixtures, where the gate,
group commit and offload apply; ``Datasette(memory=True)`` databases are
``:memory:``, where mpsqlite is sqlite3 itself. Tests marked ``playwright`` are
skipped by Datasette itself unless ``--playwright`` is given.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402

DEFAULT_GIT = Path("/work/.mirror/simonw+datasette/repo")
# Datasette's [dependency-groups] dev, less the docs tools and ruff.
TEST_DEPS = ["pytest>=9,<10", "pytest-asyncio>=1.2.0", "beautifulsoup4>=4.8.1",
             "black==26.3.1", "blacken-docs==1.20.0", "pytest-timeout>=1.4.2",
             "trustme>=0.7", "cogapp>=3.3.0", "multipart-form-data-conformance==0.1a0",
             "ruamel.yaml", "psutil>=5.9"]


def main() -> int:
    p = _eco.common_args(__doc__.splitlines()[0], default_timeout=2400)
    p.add_argument("--source", help="git dir of github.com/simonw/datasette")
    p.add_argument("--ref", default="HEAD", help="git ref to export (default HEAD)")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments / test paths "
                   "(default: tests/)")
    a = p.parse_args()
    git = Path(a.source or os.environ.get("MPSQLITE_ECO_DATASETTE_SRC") or DEFAULT_GIT)
    if not git.exists():
        raise SystemExit(f"no Datasette git snapshot at {git}: pass --source (Datasette's "
                         "sdists ship no tests/conftest.py)")
    tree, sha = _eco.git_tree(git, a.ref, "datasette")
    version = (tree / "datasette" / "version.py").read_text().split('"')[1] + f" (git {sha})"
    _eco.log(f"Datasette source: {version} of {git}")
    py = _eco.ensure_venv(f"datasette-{sha}",
                          [["-e", str(_eco.REPO)], ["-e", str(tree)], TEST_DEPS],
                          fresh=a.fresh)
    _eco.run_alias_pytest_sides("datasette", "Datasette", py, a,
                                ["-p", "no:xdist", *(a.pytest_args or ["tests/"])], version,
                                cwd=tree)
    if not a.no_compare:
        _eco.compare("datasette")
    return 0


if __name__ == "__main__":
    sys.exit(main())

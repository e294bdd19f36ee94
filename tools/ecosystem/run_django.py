#!/usr/bin/env python3
"""Django's own ORM tests on SQLite: once on stock sqlite3, once with mpsqlite as the driver.

    python tools/ecosystem/run_django.py [--version 5.2.19] [--side both] [--all | LABEL ...]

Downloads Django's sdist from PyPI (it ships tests/ and tests/runtests.py),
installs it editable with mpsqlite into <cache>/venvs/django and runs
``tests/runtests.py --settings eco_django_settings --parallel 1 --noinput
-v 2 LABEL...`` through harness/eco_launch.py.  Settings: Django's
test_sqlite.py with file test databases for both aliases (default, other).
On the mpsqlite side eco_launch aliases ``sqlite3``/``sqlite3.dbapi2`` to
mpsqlite first, so Django's backend (``from sqlite3 import dbapi2 as
Database``) uses it; ENGINE stays ``django.db.backends.sqlite3``.  --parallel 1:
the alias lives in the one test process only.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402

DEFAULT_LABELS = (
    "basic queries model_fields transactions migrations schema backends expressions "
    "aggregation select_for_update get_or_create bulk_create update delete lookup ordering "
    "annotations"
).split()


def main() -> int:
    p = _eco.common_args(__doc__.splitlines()[0], default_timeout=1800)
    p.add_argument("--version", help="Django release (default: the latest 5.x on PyPI)")
    p.add_argument("labels", nargs="*", help="runtests.py labels (default: "
                   + " ".join(DEFAULT_LABELS) + ")")
    p.add_argument("--all", action="store_true",
                   help="the whole suite (no labels); results under django-all")
    a = p.parse_args()
    version = a.version or _eco.latest_version("django", "5")
    if a.all:
        labels, project = [], "django-all"
    elif a.labels:
        labels, project = a.labels, "django-custom"
    else:
        labels, project = DEFAULT_LABELS, "django"
    tree = _eco.sdist_tree("django", version)
    runtests = tree / "tests" / "runtests.py"
    if not runtests.exists():
        raise SystemExit(f"{tree} has no tests/runtests.py: this sdist ships no test suite")
    py = _eco.ensure_venv(f"django-{version}", [["-e", str(_eco.REPO)], ["-e", str(tree)]],
                          fresh=a.fresh)
    for side in _eco.sides(a.side):
        dbdir = _eco.cache_dir() / "db" / project / side
        shutil.rmtree(dbdir, ignore_errors=True)
        dbdir.mkdir(parents=True)
        cmd = _eco.launch(py, side)
        cmd += ["--results", _eco.results_dir(project) / f"{side}.jsonl",
                "--per-test-timeout", str(a.per_test_timeout), runtests,
                "--settings", "eco_django_settings", "--parallel", "1", "--noinput", "-v", "2",
                *labels]
        _eco.run_side(
            project, side, cmd, cwd=tree / "tests",
            env=_eco.child_env({"ECO_DJANGO_DBDIR": str(dbdir),
                                **_eco.alias_env(side, a.mpsqlite_options)}),
            timeout=a.timeout, version=version,
            what=f"Django {version} runtests.py --parallel 1, file test DBs, labels: "
                 + (" ".join(labels) or "(all)")
                 + _eco.options_note(side, a.mpsqlite_options),
        )
    if not a.no_compare:
        _eco.compare(project)
    return 0


if __name__ == "__main__":
    sys.exit(main())

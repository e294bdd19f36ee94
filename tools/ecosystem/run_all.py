#!/usr/bin/env python3
"""Run the ecosystem suites (PROJECTS below) on stock sqlite3 and on mpsqlite.

    python tools/ecosystem/run_all.py [--side both] [--fresh]
        [--only django,peewee,alembic,pandas,sqlite_utils,datasette,diskcache,aiosqlite]

Then it prints every comparison.

Each project runs with its own script's defaults (see README.md); a project
whose script fails (no network, no peewee git snapshot) is reported and the
others still run.  Exit status: 0 when no project has a regression, 1 otherwise,
2 when a project could not run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402
import compare  # noqa: E402

PROJECTS = ("django", "peewee", "alembic", "pandas", "sqlite_utils", "datasette", "diskcache",
            "aiosqlite")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=(*_eco.SIDES, "both"), default="both")
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--only", default=",".join(PROJECTS))
    a = p.parse_args()
    wanted = [x for x in a.only.split(",") if x]
    broken = []
    for project in wanted:
        cmd = [sys.executable, str(_eco.HERE / f"run_{project}.py"), "--side", a.side,
               "--no-compare", *(["--fresh"] if a.fresh else [])]
        _eco.log("$ " + " ".join(cmd))
        if subprocess.run(cmd).returncode != 0:
            broken.append(project)
    compare.main([x for x in wanted if x not in broken])
    regressions = 0
    for project in wanted:
        f = _eco.results_dir(project) / "regressions.json"
        if project not in broken and f.exists():
            regressions += len(json.loads(f.read_text())["regressions"])
    if broken:
        print(f"could not run: {', '.join(broken)}")
        return 2
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())

"""The ecosystem runs' ``sqlite3`` alias (tools/ecosystem/harness): the code under test
gets mpsqlite, and a test that patches the alias cannot put the run back on sqlite3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[2] / "tools" / "ecosystem" / "harness"

_PROBE = r"""
import json, sys
from unittest import mock
import eco_sqlite3_alias
eco_sqlite3_alias.install()
import sqlite3, mpsqlite

path = sys.argv[1]
seen = {"before": type(sqlite3.connect(path)).__module__}
with mock.patch.object(sqlite3, "connect", side_effect=RuntimeError("patched")):
    try:
        sqlite3.connect(path)
    except RuntimeError as exc:
        seen["patched"] = str(exc)
seen["after"] = type(sqlite3.connect(path)).__module__
seen["mpsqlite_connect_kept"] = "connect" in vars(mpsqlite)
sqlite3.sqlite_version_info = (3, 1, 0)  # what Django's tests patch
seen["overridden"] = list(sqlite3.sqlite_version_info)
del sqlite3.sqlite_version_info
seen["restored"] = list(sqlite3.sqlite_version_info) == list(mpsqlite.sqlite_version_info)
seen["mpsqlite_version_kept"] = mpsqlite.sqlite_version_info != (3, 1, 0)
print(json.dumps(seen))
"""


def test_a_patch_of_the_alias_is_undone_without_touching_mpsqlite(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "a.db")], capture_output=True,
        text=True, timeout=120, cwd=tmp_path,
        env={"PYTHONPATH": str(HARNESS), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {
        "before": "mpsqlite.connection", "patched": "patched", "after": "mpsqlite.connection",
        "mpsqlite_connect_kept": True, "overridden": [3, 1, 0], "restored": True,
        "mpsqlite_version_kept": True,
    }

"""The slow-disk shim (bench/slowfsync.c): it builds, sits in front of SQLite's syncs, and
forwards to the real calls.

Each check runs a real Python process with the shim in ``LD_PRELOAD`` and reads the shim's
call counter file; nothing here measures time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # ``bench`` lives at the repository root, not in src/
    sys.path.insert(0, str(ROOT))

from bench import slowdisk  # noqa: E402
from bench.runner import CannotRun  # noqa: E402

COMMITS = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("pragma synchronous=" + sys.argv[2])  # first: it also governs the switch to WAL
con.execute("pragma journal_mode=wal")
con.execute("create table if not exists w (x)")
for i in range(3):
    con.execute("insert into w values (?)", (i,))
    con.commit()
con.close()
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shim compiled once for this module; skipped where no C compiler exists."""
    try:
        return slowdisk.build(tmp_path_factory.mktemp("shim"))
    except CannotRun as why:
        pytest.skip(str(why))


def _calls_under_shim(shim: Path, tmp_path: Path, code: str, *args: str) -> int:
    count = tmp_path / "calls"
    count.unlink(missing_ok=True)
    env = slowdisk.preload_env(shim, 0.5, count)
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return count.stat().st_size if count.exists() else 0


def test_durable_sqlite_commits_go_through_the_shim(shim: Path, tmp_path: Path) -> None:
    assert _calls_under_shim(shim, tmp_path, COMMITS, str(tmp_path / "full.db"), "full") >= 3


def test_commits_without_syncs_do_not_touch_it(shim: Path, tmp_path: Path) -> None:
    assert _calls_under_shim(shim, tmp_path, COMMITS, str(tmp_path / "off.db"), "off") == 0


def test_the_real_fsync_still_runs(shim: Path, tmp_path: Path) -> None:
    code = """
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
os.write(fd, b"x"); os.fsync(fd); os.fdatasync(fd); os.close(fd)
try:
    os.fsync(fd)  # closed: only the real fsync can know
except OSError as exc:
    sys.exit(0 if exc.errno == errno.EBADF else 3)
sys.exit(4)
"""
    assert _calls_under_shim(shim, tmp_path, code, str(tmp_path / "f")) == 3


def test_build_is_reused_while_up_to_date(shim: Path) -> None:
    built = shim.stat().st_mtime_ns
    assert slowdisk.build(shim.parent) == shim
    assert shim.stat().st_mtime_ns == built


def test_a_missing_compiler_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc, no cc
    with pytest.raises(CannotRun, match="gcc"):
        slowdisk.build(tmp_path / "elsewhere")

#!/usr/bin/env python3
"""peewee's own test suite on SQLite: once on stock sqlite3, once with mpsqlite as the driver.

    python tools/ecosystem/run_peewee.py [--source GIT_DIR|TREE|TARBALL] [--ref REF]
                                         [--side both] [MODULE ...]

Where the suite comes from: peewee's PyPI sdists ship no tests/ (only a stray
tests/test_utils.py; checked for 4.5.3, 3.19.0, 3.17.9, 3.14.10), so unless
the latest sdist has a tests/__init__.py again, the tree comes from a git
snapshot of github.com/coleifer/peewee: ``--source`` (a bare or normal git
dir, a checked-out tree or a tarball), else $MPSQLITE_ECO_PEEWEE_SRC, else
/work/.mirror/coleifer+peewee/repo where the session tools put it.  A git
source is exported at ``--ref`` (default HEAD) and peewee is installed from that
same tree (NO_SQLITE=1: without its optional Cython extension), so library and
tests match.

Runs ``runtests.py -e sqlite -v 2 [MODULE ...]`` (default: everything) with
the tree as cwd, through harness/eco_launch.py; peewee does ``import sqlite3``
(pysqlite3 first, not installed here), which on the mpsqlite side is aliased to
mpsqlite.  Its test database is the file peewee_test.db.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402

# optional test dependencies that reach SQLite: tests/pwasyncio.py (aiosqlite, which
# calls sqlite3.connect in its own thread, and greenlet) and tests/pydantic_utils.py
TEST_DEPS = ["aiosqlite", "greenlet", "pydantic"]
DEFAULT_GIT = Path("/work/.mirror/coleifer+peewee/repo")
LEFTOVERS = ("peewee_test.db", "peewee_test.db-wal", "peewee_test.db-shm",
             "peewee_test.db-journal", "tmp.db", "peewee_test")


def _is_git(path: Path) -> bool:
    bare = (path / "HEAD").exists() and (path / "objects").exists()
    return bare or (path / ".git").exists()


def _version_of(tree: Path) -> str:
    m = re.search(r"^__version__ = ['\"]([^'\"]+)", (tree / "peewee.py").read_text(), re.M)
    return m.group(1) if m else "?"


def from_git(git: Path, ref: str) -> tuple[Path, str]:
    tree, sha = _eco.git_tree(git, ref, "peewee")
    return tree, f"{_version_of(tree)} (git {sha} of {git})"


def from_path(src: Path, ref: str) -> tuple[Path, str]:
    if src.is_dir() and _is_git(src):
        return from_git(src, ref)
    if src.is_dir():
        return src, f"{_version_of(src)} (tree {src})"
    tree = _eco.cache_dir() / "src" / f"peewee-{src.name.split('.tar')[0]}"
    if not (tree / ".eco-complete").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tmp = tree.with_name(tree.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        with tarfile.open(src) as tar:
            tar.extractall(tmp, **kw)
        (top,) = list(tmp.iterdir())
        top.rename(tree)
        tmp.rmdir()
        (tree / ".eco-complete").write_text(str(src))
    return tree, f"{_version_of(tree)} (tarball {src})"


def find_source(a) -> tuple[Path, str]:
    if a.source:
        return from_path(Path(a.source).resolve(), a.ref)
    version = a.version or _eco.latest_version("peewee")
    sdist = _eco.sdist_tree("peewee", version)
    if (sdist / "tests" / "__init__.py").exists():
        return sdist, f"{version} (PyPI sdist)"
    _eco.log(f"peewee {version}'s sdist has no test suite (tests/__init__.py); "
             "looking for a git snapshot")
    for cand in (os.environ.get("MPSQLITE_ECO_PEEWEE_SRC"), DEFAULT_GIT):
        if cand and Path(cand).exists():
            return from_path(Path(cand), a.ref)
    raise SystemExit(
        "peewee's PyPI sdist ships no tests; pass --source with a git snapshot, tree or "
        "tarball of github.com/coleifer/peewee (or set MPSQLITE_ECO_PEEWEE_SRC)")


def main() -> int:
    p = _eco.common_args(__doc__.splitlines()[0], default_timeout=1200)
    p.add_argument("--source", help="git dir, tree or tarball of peewee with tests/")
    p.add_argument("--ref", default="HEAD", help="git ref to export (default HEAD)")
    p.add_argument("--version", help="PyPI release to try first (default latest)")
    p.add_argument("modules", nargs="*", help="runtests.py modules (default: all)")
    a = p.parse_args()
    tree, what = find_source(a)
    _eco.log(f"peewee source: {what}")
    py = _eco.ensure_venv(
        f"peewee-{tree.name}",
        [["-e", str(_eco.REPO)], ["-e", str(tree)], TEST_DEPS],
        fresh=a.fresh, pip_env={"NO_SQLITE": "1"},
    )
    for side in _eco.sides(a.side):
        for name in LEFTOVERS:
            target = tree / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        cmd = _eco.launch(py, side)
        cmd += ["--results", _eco.results_dir("peewee") / f"{side}.jsonl",
                "--per-test-timeout", str(a.per_test_timeout), tree / "runtests.py",
                "-e", "sqlite", "-v", "2", *a.modules]
        _eco.run_side(
            "peewee", side, cmd, cwd=tree, timeout=a.timeout, version=what,
            env=_eco.child_env(_eco.alias_env(side, a.mpsqlite_options)),
            what=f"peewee {what}: runtests.py -e sqlite "
                 + (" ".join(a.modules) if a.modules else "(all modules)")
                 + _eco.options_note(side, a.mpsqlite_options),
        )
    if not a.no_compare:
        _eco.compare("peewee")
    return 0


if __name__ == "__main__":
    sys.exit(main())

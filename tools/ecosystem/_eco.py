"""Shared plumbing of the ecosystem runners: cache, venvs, sdists, bounded runs.

Nothing here touches the repository except reading it: every download,
virtual environment, database file and result lands in the cache folder,
``$MPSQLITE_ECO_DIR``, else ``$XDG_CACHE_HOME/mpsqlite-eco``, else
``/tmp/mpsqlite-eco``.  Standard library only; runs on any Python 3.10+.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness"
REPO = HERE.parents[1]
SIDES = ("stock", "mpsqlite")


def cache_dir() -> Path:
    if os.environ.get("MPSQLITE_ECO_DIR"):
        base = Path(os.environ["MPSQLITE_ECO_DIR"])
    elif os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"]) / "mpsqlite-eco"
    else:
        base = Path("/tmp/mpsqlite-eco")
    base.mkdir(parents=True, exist_ok=True)
    return base


def log(msg: str) -> None:
    print(f"[eco {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log("$ " + shlex.join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def base_python() -> str:
    """The interpreter the throwaway venvs are made from (--python or $ECO_PYTHON)."""
    return os.environ.get("ECO_PYTHON") or sys.executable


# --------------------------------------------------------------------- venvs
def ensure_venv(name: str, installs: list[list[str]], fresh: bool = False,
                pip_env: dict[str, str] | None = None) -> Path:
    """A venv at <cache>/venvs/<name> with mpsqlite (editable) and ``installs``.

    Each entry of ``installs`` is one ``pip install`` argument list.  The venv
    is rebuilt when ``installs``, the base interpreter or our pyproject.toml
    change (a new core dependency), or with ``fresh``; otherwise reused, and
    since mpsqlite is installed editable the current working tree is what runs.
    """
    venv = cache_dir() / "venvs" / name
    py = venv / "bin" / "python"
    key = hashlib.sha256(
        json.dumps(
            [base_python(), installs, pip_env, (REPO / "pyproject.toml").read_text()],
            sort_keys=True,
        ).encode()
    ).hexdigest()
    stamp = venv / ".eco-stamp"
    if not fresh and py.exists() and stamp.exists() and stamp.read_text() == key:
        return py
    if venv.exists():
        shutil.rmtree(venv)
    sh([base_python(), "-m", "venv", venv])
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for args in installs:
        sh([*pip, *args], env={**os.environ, **(pip_env or {})})
    stamp.write_text(key)
    return py


# -------------------------------------------------------------------- sdists
def _pip_versions(name: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"],
        check=True, capture_output=True, text=True,
    ).stdout
    m = re.search(r"Available versions:\s*(.+)", out)
    if not m:
        raise SystemExit(f"could not read the versions of {name} from pip: {out!r}")
    return [v.strip() for v in m.group(1).split(",") if v.strip()]


def _vkey(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.]", v))


def latest_version(name: str, prefix: str | None = None) -> str:
    """Newest final release of ``name`` on PyPI, optionally starting with ``prefix``."""
    finals = [v for v in _pip_versions(name) if re.fullmatch(r"\d+(\.\d+)*", v)]
    if prefix:
        finals = [v for v in finals if v == prefix or v.startswith(prefix + ".")]
    if not finals:
        raise SystemExit(f"no release of {name} matches {prefix!r}")
    return max(finals, key=_vkey)


def sdist_tree(name: str, version: str) -> Path:
    """Download ``name==version``'s sdist from PyPI (once) and unpack it; returns the tree."""
    dl = cache_dir() / "sdists"
    dl.mkdir(exist_ok=True)
    tree = cache_dir() / "src" / f"{name}-{version}"
    if (tree / ".eco-complete").exists():
        return tree
    pattern = re.compile(rf"^{re.escape(name)}-{re.escape(version)}\.(tar\.gz|zip)$", re.I)
    found = [p for p in dl.iterdir() if pattern.match(p.name)]
    if not found:
        sh([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
            "--no-deps", "--no-binary", ":all:", f"{name}=={version}", "-d", dl])
        found = [p for p in dl.iterdir() if pattern.match(p.name)]
    if not found:
        raise SystemExit(f"pip download gave no sdist for {name}=={version}")
    if tree.exists():
        shutil.rmtree(tree)
    tree.parent.mkdir(parents=True, exist_ok=True)
    tmp = tree.parent / f".{tree.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(found[0]) as tar:
        tar.extractall(tmp, **kw)
    (top,) = list(tmp.iterdir())
    top.rename(tree)
    tmp.rmdir()
    (tree / ".eco-complete").write_text(version)
    return tree


def git_tree(git: Path, ref: str, name: str) -> tuple[Path, str]:
    """Export ``ref`` of the git dir (bare or not) ``git`` once, to <cache>/src/NAME-git-SHA;
    returns the tree and the short sha."""
    gitdir = git / ".git" if (git / ".git").exists() else git
    sha = subprocess.run(["git", "--git-dir", gitdir, "rev-parse", "--short=10", ref],
                         check=True, capture_output=True, text=True).stdout.strip()
    tree = cache_dir() / "src" / f"{name}-git-{sha}"
    if not (tree / ".eco-complete").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        archive = subprocess.run(["git", "--git-dir", gitdir, "archive", "--format=tar", sha],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        (tree / ".eco-complete").write_text(sha)
    return tree, sha


# ---------------------------------------------------------------- bounded run
def run_bounded(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
                logfile: Path) -> tuple[int | None, float]:
    """Run ``cmd`` in its own process group, output to ``logfile``; kill it at ``timeout``.

    Returns (exit code or None when it was killed, seconds).  The whole group
    is killed, which includes mpsqlite's worker processes that it started.
    """
    log(f"$ (cd {cwd} && {shlex.join(str(c) for c in cmd)}) > {logfile}  [timeout {timeout:.0f}s]")
    t0 = time.monotonic()
    with open(logfile, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
            out.write(f"\n[eco] TIMEOUT after {timeout:.0f}s: killing process group\n")
            out.flush()
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        else:
            # the test process is gone; end anything it left in its group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    secs = time.monotonic() - t0
    log(f"exit {rc if rc is not None else 'TIMEOUT'} after {secs:.0f}s")
    return rc, secs


def results_dir(project: str) -> Path:
    d = cache_dir() / "results" / project
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_meta(project: str, side: str, **meta) -> None:
    (results_dir(project) / f"{side}.meta.json").write_text(json.dumps(meta, indent=2))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(var, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def common_args(description: str, default_timeout: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--side", choices=(*SIDES, "both"), default="both",
                   help="which driver to run the suite on (default both, stock first)")
    p.add_argument("--timeout", type=int, default=default_timeout,
                   help=f"seconds for each side's whole run (default {default_timeout})")
    p.add_argument("--per-test-timeout", type=int, default=120,
                   help="seconds one test may take before it is failed (default 120)")
    p.add_argument("--fresh", action="store_true", help="rebuild the project's venv")
    p.add_argument("--no-compare", action="store_true", help="do not print the comparison")
    p.add_argument("--mpsqlite-options", metavar="JSON", default="",
                   help="mpsqlite.connect() keyword options for the mpsqlite side, as a JSON "
                        "object, e.g. '{\"workers\": 1}' (Django, peewee: added to every "
                        "connect(); Alembic: URL query options)")
    return p


def mpsqlite_options(raw: str) -> dict:
    if not raw:
        return {}
    opts = json.loads(raw)
    if not isinstance(opts, dict):
        raise SystemExit("--mpsqlite-options must be a JSON object")
    return opts


def run_pytest_sides(project: str, label: str, py: str, tree: Path, a: Any, urls: dict,
                     targets: list[str], version: str) -> None:
    """Run a project's SQLAlchemy-plugin pytest suite once per side, each in a fresh
    database folder (``urls[side]`` formatted with ``db``, that folder); --mpsqlite-options
    become URL query options on the mpsqlite side."""
    for side in sides(a.side):
        dbdir = cache_dir() / "db" / project / side
        shutil.rmtree(dbdir, ignore_errors=True)
        dbdir.mkdir(parents=True)
        for leftover in tree.glob("*.db*"):  # querytest.db, *_test_schema.db ATTACH files
            leftover.unlink()
        url = urls[side].format(db=dbdir)
        opts = mpsqlite_options(getattr(a, "mpsqlite_options", ""))
        if side == "mpsqlite" and opts:
            url += "?" + urllib.parse.urlencode(
                {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in opts.items()})
        cmd = [py, "-m", "pytest", "-p", "eco_pytest_recorder", "--dburi", url,
               "--timeout", str(a.per_test_timeout), "--maxfail", "1000000",
               "-p", "no:cacheprovider", *targets]
        run_side(
            project, side, cmd, cwd=tree, timeout=a.timeout, version=version,
            env=child_env({"PYTHONPATH": str(HARNESS)}),
            what=f"{label} {version} pytest --dburi {url} " + " ".join(targets),
        )


def run_alias_pytest_sides(project: str, label: str, py: str, a: Any, args: list[Any],
                           version: str, cwd: Path | None = None) -> None:
    """Run ``pytest ARGS`` with the outcome recorder once per side, the mpsqlite side through
    the sqlite3 alias (``eco_launch.py --alias-sqlite3``). ``cwd`` defaults to a fresh empty
    folder per side under <cache>/db/<project>/."""
    pytest_script = Path(py).parent / "pytest"
    for side in sides(a.side):
        workdir = cwd
        if workdir is None:
            workdir = cache_dir() / "db" / project / side
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
        cmd = [*launch(py, side), pytest_script, "-p", "eco_pytest_recorder", "--timeout",
               str(a.per_test_timeout), "-p", "no:cacheprovider", "-q", *args]
        run_side(
            project, side, cmd, cwd=workdir, timeout=a.timeout, version=version,
            env=child_env({"PYTHONPATH": str(HARNESS), **alias_env(side, a.mpsqlite_options)}),
            what=f"{label} {version}: pytest " + " ".join(str(x) for x in args)
                 + options_note(side, a.mpsqlite_options),
        )


def sdist_pytest_main(doc: str, project: str, pypi: str, test_deps: list[str],
                      targets: list[str], tests: str = "tests") -> int:
    """The whole of a runner for a project whose sdist ships its pytest suite: unpack
    the sdist, install it editable beside mpsqlite, run ``targets`` (or the arguments
    given) from the tree on both sides through the sqlite3 alias, compare."""
    p = common_args(doc.splitlines()[0], default_timeout=1200)
    p.add_argument("--version", help=f"{pypi} release (default: the latest on PyPI)")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments / test paths "
                   f"(default: {' '.join(targets)})")
    a = p.parse_args()
    version = a.version or latest_version(pypi)
    tree = sdist_tree(pypi.replace("-", "_"), version)
    if not (tree / tests).is_dir():
        raise SystemExit(f"{tree} has no {tests}/: this sdist ships no test suite")
    py = ensure_venv(f"{pypi}-{version}", [["-e", str(REPO)], ["-e", str(tree)], test_deps],
                     fresh=a.fresh)
    run_alias_pytest_sides(project, pypi, py, a, a.pytest_args or targets, version, cwd=tree)
    if not a.no_compare:
        compare(project)
    return 0


def alias_env(side: str, raw: str) -> dict[str, str]:
    """The environment that passes --mpsqlite-options to eco_sqlite3_alias."""
    opts = mpsqlite_options(raw)
    return {"ECO_MPSQLITE_CONNECT_KWARGS": json.dumps(opts)} if side == "mpsqlite" and opts \
        else {}


def launch(py: Any, side: str) -> list[Any]:
    """The start of a command that runs a script through harness/eco_launch.py, with the
    ``sqlite3`` alias on the mpsqlite side."""
    return [py, HARNESS / "eco_launch.py", *(["--alias-sqlite3"] if side == "mpsqlite" else [])]


def options_note(side: str, raw: str) -> str:
    """What a run's description adds for --mpsqlite-options on the mpsqlite side."""
    return f"; mpsqlite options {raw}" if side == "mpsqlite" and raw else ""


def sides(arg: str) -> list[str]:
    return list(SIDES) if arg == "both" else [arg]


def repo_revision() -> str:
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src",
                                "dialect"], capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (f" + {len(dirty.splitlines())} changed paths in src/ dialect/" if dirty
                   else "")


def run_side(project: str, side: str, cmd: list, *, cwd: Path, env: dict[str, str],
             timeout: float, what: str, version: str) -> None:
    """Run one side of a project's suite; results in results/<project>/<side>.*"""
    out = results_dir(project)
    jsonl = out / f"{side}.jsonl"
    for stale in (jsonl, jsonl.with_name(jsonl.name + ".alias.json")):
        if stale.exists():
            stale.unlink()
    env = {**env, "ECO_RESULTS": str(jsonl)}
    rc, secs = run_bounded(cmd, cwd=cwd, env=env, timeout=timeout,
                           logfile=out / f"{side}.log")
    n = sum(1 for _ in open(jsonl, encoding="utf-8")) if jsonl.exists() else 0
    log(f"{project}/{side}: {n} outcomes recorded in {jsonl}; log {out / f'{side}.log'}")
    write_meta(project, side, what=what, version=version, exit=rc, seconds=round(secs),
               command=[str(c) for c in cmd], cwd=str(cwd), mpsqlite=repo_revision(),
               timeout=timeout, finished=time.strftime("%Y-%m-%d %H:%M:%S"))


def compare(project: str) -> None:
    import compare as _compare  # tools/ecosystem is on sys.path

    _compare.main([project])

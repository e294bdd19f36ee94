"""Run CPython's own sqlite3 test suite against mpsqlite, one test module per process.

The suite is the one shipped with the running interpreter (``Lib/test/test_sqlite3/``
on 3.11+, ``Lib/sqlite3/test/`` on 3.10); nothing of it is copied into this project.

Usage::

    python tests/compat/_cpython_suite.py MODULE [--plain] [--timeout S]
    python tests/compat/_cpython_suite.py --list
    python tests/compat/_cpython_suite.py --report [MODULE ...]

The first form runs one module (e.g. ``test_dbapi``; ``dbapi`` on 3.10) in this
process, with ``sqlite3`` swapped for mpsqlite (``--plain``: the real sqlite3, as
a baseline), and prints one JSON line: ``{"kind": RESULT_KIND, "outcomes":
{test id: outcome}, ...}`` where an outcome is one of :data:`OUTCOMES`. The test
output itself goes to stderr. ``--report`` runs each module both ways in
subprocesses and prints, per module, candidate lines for
``cpython_expected_failures.txt`` (a human replaces each ``FIXME`` with the reason).

How the swap works: the real ``sqlite3`` and mpsqlite are imported first, so that
mpsqlite binds the real module. Then, only while the suite's test module is
imported, ``sys.modules`` maps ``sqlite3`` to mpsqlite, ``sqlite3.dbapi2`` to
``mpsqlite.dbapi2`` (or mpsqlite itself where it has no such submodule), and
``sqlite3.__main__`` (3.12+) to the stdlib's CLI module executed afresh, so that
its ``import sqlite3`` binds mpsqlite too. The test modules bind ``sqlite3``
only at import time (``import sqlite3 as sqlite``), so afterwards ``sys.modules``
is put back and any later ``import sqlite3`` (say, lazily inside mpsqlite) gets the
real module. ``_sqlite3``, ``sqlite3.dump`` and, on 3.10, the ``sqlite3.test``
package stay real. Child processes the suite spawns (``sys.executable -c "import
sqlite3 ..."``) get the real sqlite3: they play the other party in multi-process
tests, and swapping there would also reach mpsqlite's own worker processes.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import traceback
import unittest
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXPECTED_FAILURES_FILE = HERE / "cpython_expected_failures.txt"

#: ``major.minor`` of the running interpreter, as used in the expected-failures file.
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
#: The package holding the suite's test modules on this interpreter.
SUITE_PACKAGE = "sqlite3.test" if sys.version_info < (3, 11) else "test.test_sqlite3"
#: Seconds one module run may take before its whole process group is killed.
MODULE_TIMEOUT = 240.0
#: Marks the result line on the runner's stdout.
RESULT_KIND = "cpython-sqlite3-suite-result"

#: Per-test outcomes, in rising order of severity: a test that, say, fails and then
#: errors in tearDown keeps the worse one.
OUTCOMES = ("pass", "skip", "xfail", "fail", "xpass", "error")
_SEVERITY = {name: rank for rank, name in enumerate(OUTCOMES)}
#: Outcomes that make a unittest run unsuccessful.
FAILING = frozenset({"fail", "xpass", "error"})

_MISSING = object()


# --------------------------------------------------------------------------- discovery


def suite_dir() -> Path | None:
    """Directory of this interpreter's sqlite3 test modules, or None where it ships none.

    Looked up in the stdlib directory rather than through ``import test``, so that
    a ``test`` package elsewhere on ``sys.path`` cannot stand in for CPython's."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    base = stdlib.joinpath(*SUITE_PACKAGE.split("."))
    return base if (base / "__init__.py").is_file() else None


def discover_modules() -> list[str]:
    """Names of the suite's test modules on this interpreter (``test_dbapi``, ...)."""
    base = suite_dir()
    if base is None:
        return []
    # 3.11+ loads "test*.py" (load_package_tests); 3.10 has every module in the package.
    pattern = "*.py" if SUITE_PACKAGE == "sqlite3.test" else "test*.py"
    return sorted(p.stem for p in base.glob(pattern) if p.stem != "__init__")


def short_id(test_id: str) -> str:
    """``test.test_sqlite3.test_dbapi.X.test_y`` -> ``test_dbapi.X.test_y``.

    Also shortens unittest's pseudo tests such as ``setUpClass (test.test_sqlite3.m.X)``."""
    return test_id.replace(SUITE_PACKAGE + ".", "")


def module_of(test_id: str) -> str:
    """The suite module a short test id belongs to."""
    if "(" in test_id:  # "setUpClass (test_dbapi.X)"
        test_id = test_id.split("(", 1)[1].rstrip(")")
    return test_id.split(".", 1)[0]


# ------------------------------------------------------------------------- the swap


def import_mpsqlite() -> ModuleType:
    """Import mpsqlite; where it is not installed, from this checkout's ``src``."""
    try:
        return importlib.import_module("mpsqlite")
    except ModuleNotFoundError as exc:
        if exc.name != "mpsqlite":
            raise
    sys.path.insert(0, str(REPO / "src"))
    return importlib.import_module("mpsqlite")


def _dbapi2_of(target: ModuleType) -> ModuleType:
    """``target.dbapi2`` where that submodule exists, else ``target`` itself."""
    name = target.__name__ + ".dbapi2"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return target


def _load_stdlib_cli(path: Path) -> ModuleType:
    """Execute the stdlib's ``sqlite3/__main__.py`` as ``sqlite3.__main__`` (now)."""
    spec = importlib.util.spec_from_file_location("sqlite3.__main__", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sqlite3.__main__"] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def sqlite3_swapped(target: ModuleType) -> Iterator[None]:
    """While the block runs, ``import sqlite3`` (and its submodules) give ``target``.

    ``sys.modules`` is restored on exit; modules imported inside keep what they bound."""
    real = importlib.import_module("sqlite3")  # the real package: target bound it already
    dbapi2 = _dbapi2_of(target)  # imported before the swap, so it binds the real sqlite3
    cli = Path(real.__file__ or "").with_name("__main__.py")  # 3.12+: the CLI
    names = ("sqlite3", "sqlite3.dbapi2", "sqlite3.__main__")
    saved = {name: sys.modules.get(name, _MISSING) for name in names}
    try:
        sys.modules["sqlite3"] = target
        sys.modules["sqlite3.dbapi2"] = dbapi2
        sys.modules.pop("sqlite3.__main__", None)
        if cli.is_file():
            _load_stdlib_cli(cli)
        yield
    finally:
        for name, module in saved.items():
            if module is _MISSING:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def import_suite_module(module: str, target: ModuleType | None) -> ModuleType:
    """Import the suite's ``module``, with ``sqlite3`` swapped for ``target`` unless None."""
    import test.support  # CPython's (checked below); loaded before any swap

    test.support.verbose = False  # as regrtest without -v: no chatter on stdout

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    if not Path(sys.modules["test"].__file__ or "").resolve().is_relative_to(stdlib):
        raise ImportError(f"'test' is not CPython's test package: {sys.modules['test']!r}")
    if SUITE_PACKAGE.startswith("sqlite3."):
        # 3.10: the suite lives inside the real sqlite3 package; load that package
        # first so that its submodules still come from the stdlib during the swap.
        importlib.import_module(SUITE_PACKAGE)
    name = f"{SUITE_PACKAGE}.{module}"
    if target is None:
        return importlib.import_module(name)
    if name in sys.modules:
        raise ImportError(f"{name} was imported before the swap")
    with sqlite3_swapped(target):
        loaded = importlib.import_module(name)
    for attr in ("sqlite", "sqlite3"):
        bound = getattr(loaded, attr, None)
        if isinstance(bound, ModuleType) and bound is not target:
            raise ImportError(f"{name}.{attr} is {bound!r}, not {target.__name__}")
    return loaded


# ------------------------------------------------------------------- running a module


class OutcomeResult(unittest.TextTestResult):
    """A verbose text result that also records one outcome per (short) test id."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, str] = {}
        self.details: dict[str, str] = {}

    def _record(self, test: unittest.TestCase, outcome: str, detail: str = "") -> None:
        # A failing subTest counts against the test that holds it.
        tid = short_id(getattr(test, "test_case", test).id())
        previous = self.outcomes.get(tid)
        if previous is None or _SEVERITY[outcome] > _SEVERITY[previous]:
            self.outcomes[tid] = outcome
            if detail:
                self.details[tid] = detail[-2000:]

    def _err_text(self, err: Any, test: unittest.TestCase) -> str:
        return self._exc_info_to_string(err, test)

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "fail", self._err_text(err, test))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error", self._err_text(err, test))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        if not hasattr(test, "test_case"):  # a skipped subTest does not skip its test
            self._record(test, "skip", reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "xfail")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "xpass", "unexpected success of an @expectedFailure test")

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(test, "fail" if failed else "error", self._err_text(err, subtest))


def run_in_process(module: str, plain: bool) -> dict[str, Any]:
    """Run one suite module here and return the result record that the JSON line carries."""
    record: dict[str, Any] = {
        "kind": RESULT_KIND,
        "python": PYTHON,
        "module": module,
        "target": "sqlite3" if plain else "mpsqlite",
        "target_file": None,
        "setup_error": None,
        "setup_stage": None,
        "outcomes": {},
        "details": {},
        "counts": {},
    }
    if module not in discover_modules():
        record["setup_stage"] = "discover"
        record["setup_error"] = f"no module {module!r} in {SUITE_PACKAGE}: {discover_modules()}"
        return record
    stage = "import sqlite3" if plain else "import mpsqlite"
    try:
        target = None if plain else import_mpsqlite()
        record["target_file"] = (target or importlib.import_module("sqlite3")).__file__
        stage = "import test module"
        loaded = import_suite_module(module, target)
    except Exception:  # unittest.SkipTest from import_helper included
        record["setup_stage"] = stage
        record["setup_error"] = traceback.format_exc()
        return record
    tests = unittest.defaultTestLoader.loadTestsFromModule(loaded)
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=OutcomeResult)
    result = runner.run(tests)
    assert isinstance(result, OutcomeResult)
    record["outcomes"] = dict(sorted(result.outcomes.items()))
    record["details"] = dict(sorted(result.details.items()))
    record["counts"] = dict(Counter(result.outcomes.values()))
    return record


def _runner_main(module: str, plain: bool, timeout: float | None) -> int:
    """Entry point of one module run: a scratch cwd, a hang guard, then the JSON line."""
    faulthandler.enable()
    if timeout:
        # Dump every thread's stack and exit if the run (or the exit after it) hangs.
        faulthandler.dump_traceback_later(timeout, exit=True)
    scratch = tempfile.mkdtemp(prefix="mpsqlite-cpython-suite-")
    cwd = os.getcwd()
    os.chdir(scratch)  # the suite writes TESTFN files into the current directory
    try:
        record = run_in_process(module, plain)
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    out = sys.__stdout__
    assert out is not None
    out.write("\n" + json.dumps(record) + "\n")
    out.flush()
    return 0


# ------------------------------------------------------------- running it from outside


@dataclass
class SuiteRun:
    """One module run in a subprocess, as seen from outside."""

    module: str
    plain: bool
    limit: float
    returncode: int | None  # None: killed after ``limit`` seconds
    record: dict[str, Any] | None  # the JSON line; None if none was printed
    stdout: str
    stderr: str

    @property
    def outcomes(self) -> dict[str, str]:
        """Test id -> outcome (empty when the run produced no result)."""
        return dict(self.record["outcomes"]) if self.record else {}

    @property
    def setup_error(self) -> str | None:
        """Why the module could not even be loaded, if it could not."""
        return self.record["setup_error"] if self.record else None

    @property
    def passed(self) -> int:
        """How many tests passed."""
        return sum(1 for outcome in self.outcomes.values() if outcome == "pass")

    def problem(self) -> str | None:
        """What went wrong with the process itself (hang, crash, bad exit), if anything."""
        if self.returncode is None:
            return f"hung: still running after {self.limit:.0f} s, process group killed"
        if self.record is None:
            if "Timeout (" in self.stderr:
                return "hung: faulthandler dumped its stacks (see the output) and exited"
            return f"crashed: exit status {self.returncode} and no result line"
        if self.returncode != 0:
            return f"printed its results but then exited with status {self.returncode}"
        return None

    def tail(self, chars: int = 4000) -> str:
        """The end of the run's output, for failure messages.

        After a hang, the stack dump instead, from its start (innermost frames
        first), with a little of the output before it: the test that hung."""
        stderr = self.stderr.rstrip()
        dump = stderr.rfind("Timeout (")
        if dump >= 0:
            before = stderr[max(0, dump - chars // 4) : dump]
            return (before + stderr[dump:])[:chars]
        stdout = "\n".join(
            line for line in self.stdout.splitlines() if RESULT_KIND not in line
        ).strip()
        text = stderr + ("\n--- stdout ---\n" + stdout if stdout else "")
        return text[-chars:]

    def counts(self) -> str:
        """``430 pass, 6 skip`` style summary."""
        counter = Counter(self.outcomes.values())
        return ", ".join(f"{counter[name]} {name}" for name in OUTCOMES if counter[name])


def _kill_group(pgid: int) -> None:
    """SIGKILL every process left in a process group (none left is fine)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_module(
    module: str, *, plain: bool, limit: float = MODULE_TIMEOUT, python: str | None = None
) -> SuiteRun:
    """Run one suite module in a fresh interpreter in its own process group.

    Output goes to files, not pipes, so worker processes that inherit them cannot
    keep us waiting; whatever is left of the group afterwards is killed. The run's
    TMPDIR (where the runner makes its scratch cwd) is removed afterwards, even
    when the run had to be killed."""
    cmd = [python or sys.executable, str(Path(__file__).resolve()), module]
    # The runner's own guard fires first, so a hang still reports its stacks.
    cmd += ["--timeout", str(max(limit - 15, limit * 0.9))]
    if plain:
        cmd.append("--plain")
    with (
        tempfile.TemporaryDirectory(prefix="mpsqlite-cpython-suite-") as tmp,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            env={**os.environ, "TMPDIR": tmp},
        )
        returncode: int | None = None
        try:
            returncode = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _kill_group(proc.pid)
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    return SuiteRun(module, plain, limit, returncode, _parse_record(stdout), stdout, stderr)


def _parse_record(stdout: str) -> dict[str, Any] | None:
    """The last JSON result line in a runner's stdout, if any."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{") and RESULT_KIND in line:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("kind") == RESULT_KIND:
                    return record
    return None


# ------------------------------------------------------------ expected-failures file

_LINE = re.compile(r"^(?P<python>\d+\.\d+)\s+(?P<test>\S+)\s*(?:#\s*(?P<reason>.*))?$")


@dataclass(frozen=True)
class ExpectedFailure:
    """One line of the expected-failures file."""

    lineno: int
    python: str
    test: str
    reason: str


def load_expected_failures(path: Path = EXPECTED_FAILURES_FILE) -> list[ExpectedFailure]:
    """Every entry of the expected-failures file (all Python versions).

    Format: ``<major.minor> <test id>  # reason``; blank lines and lines starting
    with ``#`` are ignored. A malformed line raises ValueError naming it."""
    entries = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"{path.name}:{lineno}: not '<major.minor> <test id>  # reason'")
        reason = (match["reason"] or "").strip()
        entries.append(ExpectedFailure(lineno, match["python"], match["test"], reason))
    return entries


def expected_for(module: str, python: str = PYTHON) -> dict[str, str]:
    """Test id -> reason, for the expected failures of one module on one Python."""
    return {
        e.test: e.reason
        for e in load_expected_failures()
        if e.python == python and module_of(e.test) == module
    }


# --------------------------------------------------------------------------- --report


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(:|$)")


def error_line(detail: str) -> str:
    """The exception line of a traceback text (``AssertionError: ...``), shortened.

    The last unindented ``Name: message`` line, not the last line: assertEqual's
    diff lines follow the exception line."""
    lines = [line.rstrip() for line in detail.strip().splitlines() if line.strip()]
    found = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return (found or lines or ["?"])[-1][:200]


def report(modules: list[str]) -> int:
    """Print per module how mpsqlite differs from plain sqlite3, as candidate lines."""
    total_mp = total_plain = 0
    for module in modules:
        plain = run_module(module, plain=True)
        mp = run_module(module, plain=False)
        total_plain += plain.passed
        total_mp += mp.passed
        print(f"== {module}: mpsqlite [{mp.counts()}]  plain [{plain.counts()}]")
        for run in (plain, mp):
            what = "plain sqlite3" if run.plain else "mpsqlite"
            if run.problem():
                print(f"#  {what} run {run.problem()}\n" + _comment(run.tail(1500)))
            if run.setup_error:
                last = "\n".join(run.setup_error.rstrip().splitlines()[-8:])
                print(f"#  {what} could not load the module:\n" + _comment(last))
        expected = expected_for(module)
        details = mp.record["details"] if mp.record else {}
        for tid, outcome in mp.outcomes.items():
            if outcome not in FAILING or tid in expected:
                continue
            base = plain.outcomes.get(tid)
            note = f" (fails under plain sqlite3 too: {base})" if base in FAILING else ""
            error = error_line(details.get(tid, outcome))
            print(f"{PYTHON} {tid}  # FIXME{note}: {outcome}: {error}")
        for tid in sorted(expected):
            if mp.outcomes.get(tid) not in FAILING:
                got = mp.outcomes.get(tid, "not run")
                print(f"#  listed but {got} now, remove: {PYTHON} {tid}")
        for tid, outcome in mp.outcomes.items():
            if outcome == "skip" and plain.outcomes.get(tid) == "pass":
                reason = details.get(tid, "")
                print(f"#  skipped under mpsqlite, passes under plain: {tid} ({reason})")
    share = f"{100 * total_mp / total_plain:.1f}%" if total_plain else "n/a"
    print(f"== total: mpsqlite passes {total_mp}, plain sqlite3 passes {total_plain} ({share})")
    return 0


def _comment(text: str) -> str:
    return "\n".join("#    " + line for line in text.rstrip().splitlines())


def main(argv: list[str] | None = None) -> int:
    """Command line: run one module, list the modules, or report the differences."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE")
    parser.add_argument("--plain", action="store_true", help="use the real sqlite3")
    parser.add_argument("--timeout", type=float, help="dump stacks and exit after S seconds")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="print the suite's modules")
    mode.add_argument("--report", action="store_true", help="mpsqlite vs plain, per module")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(discover_modules()))
        return 0
    if args.report:
        return report(args.modules or discover_modules())
    if len(args.modules) != 1:
        parser.error("give exactly one MODULE (see --list)")
    return _runner_main(args.modules[0], args.plain, args.timeout)


if __name__ == "__main__":
    # Not on sys.path: only this file's directory would be, and the suite needs none of it.
    if sys.path and Path(sys.path[0]).resolve() == HERE:
        del sys.path[0]
    sys.exit(main())

"""CPython's own sqlite3 test suite, run against mpsqlite with ``sqlite3`` swapped out.

Each module of the suite shipped with this interpreter runs twice, each time in a
fresh subprocess (see ``_cpython_suite.py``): with the real sqlite3 as the
baseline, then with mpsqlite. Whatever fails under mpsqlite (and passes under the
real sqlite3 here) must be listed in ``cpython_expected_failures.txt`` for this
Python version, and whatever is listed must still fail: the list stays honest.
Candidate lines: ``python tests/compat/_cpython_suite.py --report``.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Callable
from typing import TypeVar

import pytest

from . import _cpython_suite as suite

MODULES = suite.discover_modules()

#: mpsqlite must pass at least this share of what the real sqlite3 passes, overall.
PASS_FLOOR = 0.95

_F = TypeVar("_F", bound=Callable[..., object])

_RUNS: dict[tuple[str, bool], suite.SuiteRun] = {}


def _timeout(seconds: float) -> Callable[[_F], _F]:
    """pytest-timeout's mark (0: none) where that plugin is installed, else a no-op.

    Each module run has its own time limit, so these only keep the ini default
    (meant for single tests) from cutting a module's two runs short."""
    if importlib.util.find_spec("pytest_timeout") is None:
        return lambda func: func
    return pytest.mark.timeout(seconds)


pytestmark = [
    pytest.mark.skipif(
        not MODULES, reason=f"this interpreter ships no sqlite3 test suite ({suite.SUITE_PACKAGE})"
    )
]


def _run(module: str, *, plain: bool) -> suite.SuiteRun:
    """One module run, cached for the session (the floor test reuses them)."""
    key = (module, plain)
    if key not in _RUNS:
        _RUNS[key] = suite.run_module(module, plain=plain)
    return _RUNS[key]


def _baseline(module: str) -> suite.SuiteRun:
    """The module's run with the real sqlite3; skips where even that cannot load it."""
    plain = _run(module, plain=True)
    problem = plain.problem()
    if problem:
        pytest.fail(f"{module} with plain sqlite3 {problem}\n{plain.tail()}", pytrace=False)
    if plain.setup_error:
        pytest.skip(f"{module} cannot be loaded even with plain sqlite3: {plain.setup_error}")
    return plain


def _listing(title: str, ids: list[str], run: suite.SuiteRun, with_details: bool) -> str:
    """A block of the failure message: a title, then one test id a line."""
    details = run.record["details"] if run.record else {}
    lines = [f"{title} ({len(ids)}):"]
    for tid in ids:
        lines.append(f"  {tid}")
        if with_details and tid in details:
            lines.append("      " + suite.error_line(details[tid]))
    return "\n".join(lines)


@_timeout(2 * suite.MODULE_TIMEOUT + 60)
@pytest.mark.parametrize("module", MODULES)
def test_module(module: str) -> None:
    """Every mpsqlite failure in ``module`` is an expected one, and every expected one fails."""
    plain = _baseline(module)
    mp = _run(module, plain=False)
    problem = mp.problem()
    if problem:
        pytest.fail(f"{module} with mpsqlite {problem}\n{mp.tail()}", pytrace=False)
    if mp.setup_error:
        stage = mp.record["setup_stage"] if mp.record else "?"
        pytest.fail(
            f"{module} could not be loaded with mpsqlite ({stage}):\n{mp.setup_error}",
            pytrace=False,
        )
    expected = suite.expected_for(module)
    failing = {tid for tid, outcome in mp.outcomes.items() if outcome in suite.FAILING}
    # Failing under the real sqlite3 too is this environment's doing, not mpsqlite's.
    also_plain = sorted(tid for tid in failing if plain.outcomes.get(tid) in suite.FAILING)
    unexpected = sorted(failing - set(expected) - set(also_plain))
    now_pass = sorted(tid for tid in expected if mp.outcomes.get(tid) == "pass")
    stale = sorted(
        tid for tid in expected if tid not in failing and tid not in now_pass
    )  # skipped, xfail or no such test any more
    if also_plain:
        warnings.warn(
            f"{module}: fail under plain sqlite3 too, not counted against mpsqlite: "
            + ", ".join(also_plain),
            stacklevel=1,
        )
    blocks = []
    if unexpected:
        blocks.append(_listing("unexpected failures under mpsqlite", unexpected, mp, True))
    if now_pass:
        blocks.append(
            _listing("XPASS(strict): listed as expected failures, now pass", now_pass, mp, False)
        )
    if stale:
        outcomes = [f"{tid} [{mp.outcomes.get(tid, 'not run')}]" for tid in stale]
        blocks.append(_listing("listed as expected failures but not failing", outcomes, mp, False))
    if blocks:
        pytest.fail(
            f"{module} on Python {suite.PYTHON}, mpsqlite [{mp.counts()}], "
            f"plain sqlite3 [{plain.counts()}]\n"
            + "\n".join(blocks)
            + f"\n(update {suite.EXPECTED_FAILURES_FILE.name}; candidates: "
            f"python tests/compat/_cpython_suite.py --report {module})\n"
            f"--- end of the mpsqlite run's output ---\n{mp.tail(3000)}",
            pytrace=False,
        )


def test_expected_failures_file_is_well_formed() -> None:
    """Each line names a Python, a test id and a real reason, once."""
    entries = suite.load_expected_failures()
    seen: set[tuple[str, str]] = set()
    problems = []
    for entry in entries:
        where = f"line {entry.lineno}: {entry.test}"
        if not entry.reason or entry.reason.upper().startswith(("FIXME", "TODO", "XXX")):
            problems.append(f"{where}: give the reason it fails")
        if (entry.python, entry.test) in seen:
            problems.append(f"{where}: listed twice for {entry.python}")
        seen.add((entry.python, entry.test))
        if entry.python == suite.PYTHON and MODULES and suite.module_of(entry.test) not in MODULES:
            problems.append(f"{where}: no module {suite.module_of(entry.test)!r} on this Python")
    assert not problems, "\n".join(problems)


@_timeout(0)
def test_pass_count_floor() -> None:
    """Overall, mpsqlite passes at least PASS_FLOOR of what the real sqlite3 passes."""
    plain_passed = mp_passed = 0
    per_module = []
    for module in MODULES:
        plain = _run(module, plain=True)
        if plain.problem() or plain.setup_error:
            continue  # test_module reports it; nothing to compare against
        mp = _run(module, plain=False)
        plain_passed += plain.passed
        mp_passed += mp.passed
        per_module.append(f"  {module}: {mp.passed} / {plain.passed}")
    if not plain_passed:
        pytest.skip("no module of the suite ran with plain sqlite3")
    needed = math.ceil(PASS_FLOOR * plain_passed)
    assert mp_passed >= needed, (
        f"mpsqlite passes {mp_passed} of the {plain_passed} tests plain sqlite3 passes "
        f"({mp_passed / plain_passed:.1%}); the floor is {needed} ({PASS_FLOOR:.0%})\n"
        + "\n".join(per_module)
    )

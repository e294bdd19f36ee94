"""Record every unittest outcome as one JSON line, and time out hung tests.

``install(path, per_test_timeout)`` makes ``unittest.TextTestRunner`` (used by
Django's DiscoverRunner and by peewee's runtests.py) build its result object
from a subclass of whatever result class it would have used, which appends
``{"id", "outcome", "detail", "secs"}`` to ``path`` as each test ends (so a run
killed by its overall timeout still leaves what it did).  Outcomes: passed,
failed, error, skipped, xfail, xpass.  A test that fails in a subtest is
recorded failed once per failing subtest; compare.py keeps the worst outcome
per id.

A test still running after ``per_test_timeout`` seconds gets ``EcoTestTimeout``
(a BaseException, so ``except Exception`` in the code under test does not
swallow it) raised in the main thread by SIGALRM; unittest records it as an
error with the stack of where it hung, and the run goes on.

Runners started inside a running test (a test suite that tests a test runner)
are not recorded: only the outermost run's tests are the project's tests.
"""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
import unittest
from typing import Any

_MAX_DETAIL = 6000
_RUNNING: list[Any] = []  # result objects with a test running, outermost first


class EcoTestTimeout(BaseException):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise EcoTestTimeout("eco harness: test exceeded its per-test timeout")


def _detail(result: unittest.TestResult, test: Any, err: Any) -> str:
    try:
        text = result._exc_info_to_string(err, test)  # type: ignore[attr-defined]
    except Exception:
        text = "".join(traceback.format_exception(*err))
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL // 3] + "\n[...]\n" + text[-(2 * _MAX_DETAIL) // 3 :]
    return text


def _make_recording(base: type, path: str, per_test_timeout: float) -> type:
    class RecordingResult(base):  # type: ignore[misc, valid-type]
        _eco_started: dict[str, float] = {}

        def _eco_nested(self) -> bool:
            """A runner started inside another recorded test (Django's test_runner
            tests run sample suites that fail on purpose): not recorded, no timer."""
            return bool(_RUNNING) and _RUNNING[0] is not self

        def _eco_write(self, test: Any, outcome: str, detail: str = "") -> None:
            if self._eco_nested():
                return
            tid = test.id() if hasattr(test, "id") else str(test)
            started = self._eco_started.get(tid)
            rec = {
                "id": tid,
                "outcome": outcome,
                "detail": detail,
                "secs": round(time.monotonic() - started, 3) if started else None,
            }
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")

        def startTest(self, test: Any) -> None:
            if not self._eco_nested():
                self._eco_started[test.id()] = time.monotonic()
                if per_test_timeout:
                    signal.setitimer(signal.ITIMER_REAL, per_test_timeout)
            _RUNNING.append(self)
            super().startTest(test)

        def stopTest(self, test: Any) -> None:
            if _RUNNING and _RUNNING[-1] is self:
                _RUNNING.pop()
            if per_test_timeout and not self._eco_nested():
                signal.setitimer(signal.ITIMER_REAL, 0)
            super().stopTest(test)

        def addSuccess(self, test: Any) -> None:
            super().addSuccess(test)
            self._eco_write(test, "passed")

        def addFailure(self, test: Any, err: Any) -> None:
            super().addFailure(test, err)
            self._eco_write(test, "failed", _detail(self, test, err))

        def addError(self, test: Any, err: Any) -> None:
            super().addError(test, err)
            self._eco_write(test, "error", _detail(self, test, err))

        def addSkip(self, test: Any, reason: str) -> None:
            super().addSkip(test, reason)
            self._eco_write(test, "skipped", str(reason))

        def addExpectedFailure(self, test: Any, err: Any) -> None:
            super().addExpectedFailure(test, err)
            self._eco_write(test, "xfail")

        def addUnexpectedSuccess(self, test: Any) -> None:
            super().addUnexpectedSuccess(test)
            self._eco_write(test, "xpass")

        def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
            super().addSubTest(test, subtest, err)
            if err is not None:
                failure = issubclass(err[0], test.failureException)
                self._eco_write(
                    test, "failed" if failure else "error",
                    f"[subtest {subtest}]\n" + _detail(self, test, err),
                )

    RecordingResult.__name__ = f"Recording{base.__name__}"
    return RecordingResult


def install(path: str, per_test_timeout: float = 0.0) -> None:
    if per_test_timeout:
        signal.signal(signal.SIGALRM, _on_alarm)
    original_init = unittest.TextTestRunner.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        base = self.resultclass or unittest.TextTestResult
        if not getattr(base, "_eco_recording", False):
            cls = _make_recording(base, path, per_test_timeout)
            cls._eco_recording = True
            self.resultclass = cls

    unittest.TextTestRunner.__init__ = __init__  # type: ignore[method-assign]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

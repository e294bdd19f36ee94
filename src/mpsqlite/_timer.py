"""Statement deadlines: one timer thread per process, a heap of deadlines, interrupts on time.

Used on both sides of the wire: the caller arms one :class:`Deadline` per
connection that sets ``statement_timeout``, a worker one for the statement it
runs. Arming costs a lock and a dict store; the heap holds at most one live
entry per deadline, and the thread (started on first use) sleeps until the
earliest is due. It imports nothing from the package.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import weakref
from collections.abc import Callable, Hashable
from time import monotonic

#: After an interrupt, how often it is repeated while the statement still runs: an
#: interrupt that lands before SQLite starts the statement (a writer gate wait) is lost.
REPEAT = 0.05

_cond = threading.Condition(threading.Lock())
_heap: list[tuple[float, int, Deadline]] = []
_seq = itertools.count()
_thread: threading.Thread | None = None
_all: weakref.WeakSet[Deadline] = weakref.WeakSet()


class Deadline:
    """When to call ``interrupt`` for the statements now running on one connection.

    Each running statement is armed under its own key with its own due time;
    when the earliest passes, ``interrupt`` is called (and repeated every
    ``REPEAT`` s) and every key armed at that moment is marked as fired."""

    __slots__ = ("interrupt", "lock", "dues", "fired", "queued_at", "__weakref__")

    def __init__(self, interrupt: Callable[[], None]) -> None:
        self.interrupt = interrupt
        self.lock = threading.Lock()
        self.dues: dict[Hashable, float] = {}
        self.fired: set[Hashable] = set()
        self.queued_at: float | None = None  # due time of this deadline's live heap entry
        _all.add(self)

    def arm(self, key: Hashable, due: float, now: float) -> None:
        """Interrupt at ``due`` (``time.monotonic()`` time, ``now`` the present) unless
        ``disarm(key)`` comes first; at once if it is past (a fetch that began too late)."""
        with self.lock:
            self.dues[key] = due
            if due <= now:
                self._fire()
            queued = self.queued_at
            if queued is not None and queued <= due:
                return
            self.queued_at = due
        _push(due, self)

    def disarm(self, key: Hashable) -> bool:
        """Stop timing ``key``; whether its deadline passed and the interrupt was sent.
        After it returns no interrupt is sent on behalf of ``key``."""
        with self.lock:
            self.dues.pop(key, None)
            if not self.fired:
                return False
            try:
                self.fired.remove(key)
            except KeyError:
                return False
            return True

    def _due(self, when: float) -> None:
        """The timer thread: the heap entry for ``when`` came due."""
        with self.lock:
            if when != self.queued_at:
                return  # superseded by an earlier entry
            if not self.dues:
                self.queued_at = None
                return
            now = monotonic()
            first = min(self.dues.values())
            if first <= now:
                self._fire()
                first = now + REPEAT
            self.queued_at = first
        _push(first, self)

    def _fire(self) -> None:
        self.fired.update(self.dues)
        try:
            self.interrupt()
        except Exception:
            pass  # a closed connection: nothing runs on it any more


def _push(due: float, deadline: Deadline) -> None:
    global _thread
    with _cond:
        heapq.heappush(_heap, (due, next(_seq), deadline))
        if _thread is None:
            _thread = threading.Thread(target=_run, name="mpsqlite-timer", daemon=True)
            _thread.start()
        elif _heap[0][2] is deadline:
            _cond.notify()


def _run() -> None:
    while True:
        with _cond:
            while True:
                if not _heap:
                    _cond.wait()
                    continue
                delay = _heap[0][0] - monotonic()
                if delay <= 0:
                    when, _, deadline = heapq.heappop(_heap)
                    break
                _cond.wait(delay)
        deadline._due(when)


def _after_fork_in_child() -> None:
    """The timer thread did not survive the fork: start afresh, with nothing armed."""
    global _cond, _thread
    _cond = threading.Condition(threading.Lock())
    _heap.clear()
    _thread = None
    for deadline in list(_all):
        deadline.lock = threading.Lock()
        deadline.dues.clear()
        deadline.fired.clear()
        deadline.queued_at = None


os.register_at_fork(after_in_child=_after_fork_in_child)

"""The writer gate: one write transaction at a time per database file, first come first served.

Writers wait here, up to their connection's ``timeout``, instead of colliding
inside SQLite and failing with ``database is locked``. While they wait they
offer the holder to give its turn back (its ``max_write_seconds`` decides), so
one forgotten transaction cannot stop every other writer. The gate holds its
owner weakly: a connection dropped without ``close()`` gives its turn on.

Given a file's key, the gate's holder also needs its process to hold the file's writer
turn (:mod:`mpsqlite._coord`), which orders the writers of every process on the host.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from typing import Any, Protocol

from ._coord import Turn

_POLL = 0.05
#: Once another process waits for the turn, the most writers already queued here that
#: still go first.
QUOTA = 16
#: Upper bounds (seconds) of the wait-time buckets counted per grant, for mpsqlite.metrics.
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0)


class Holder(Protocol):
    """What the gate needs of a holder: a way to take its transaction back."""

    def _revoke_write(self, limit: float) -> None: ...


class _Waiter:
    """A queued writer: ``ready`` is taken at birth and released to grant the gate
    (one futex wake; an Event would cost a Condition's several lock hand-offs)."""

    __slots__ = ("owner", "ready", "granted", "since")

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.ready = threading.Lock()
        self.ready.acquire()
        self.granted = False
        self.since = time.monotonic()


class WriterGate:
    """A FIFO lock with timeouts and revocation of idle, overdue holders."""

    def __init__(self, file_key: tuple[Any, ...] | None = None) -> None:
        self._lock = threading.Lock()
        self.turn = (Turn(file_key, self._turn_wanted, self._turn_revoked)
                     if file_key is not None else None)
        self._quota = 0
        self._waiters: deque[_Waiter] = deque()
        self._owner: weakref.ref[Any] | None = None
        self.since = 0.0
        self.grants = 0
        self.waited = 0.0
        # Grants that waited, by WAIT_BUCKETS (the last: longer); grants not counted here
        # did not wait. Counted with ``grants``, under the lock, so the two always agree.
        self.waits = [0] * (len(WAIT_BUCKETS) + 1)
        self.timeouts = 0

    @property
    def owner(self) -> Holder | None:
        ref = self._owner
        return ref() if ref is not None else None

    @property
    def held(self) -> bool:
        return self._owner is not None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def acquire(self, owner: Holder, timeout: float) -> None:
        """Wait until ``owner`` holds the gate; OperationalError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._owner is None and not self._waiters:
                self._owner, self.since = weakref.ref(owner), time.monotonic()
                self.grants += 1
                waiter = None
            else:
                waiter = _Waiter(owner)
                self._waiters.append(waiter)
        if waiter is not None:
            self._wait(waiter, deadline)
        turn = self.turn
        if turn is None or turn.held or not turn.engaged or not getattr(
                owner, "_coordinate", True):
            return
        if not turn.acquire(deadline, getattr(owner, "_max_write", None)):
            with self._lock:
                self.timeouts += 1
            self.release(owner)
            raise sqlite3.OperationalError("database is locked")

    def _wait(self, waiter: _Waiter, deadline: float) -> None:
        while True:
            remaining = deadline - time.monotonic()
            if waiter.ready.acquire(timeout=min(max(remaining, 0.0), _POLL)):
                return
            self._revoke_overdue()
            if remaining <= 0:
                with self._lock:
                    if waiter.granted:
                        return
                    self._waiters.remove(waiter)
                    self.timeouts += 1
                raise sqlite3.OperationalError("database is locked")

    def release(self, owner: Holder) -> None:
        """Hand the gate to the longest waiter, if ``owner`` holds it (or its holder is gone:
        a connection collected without close() releases from its finalizer)."""
        with self._lock:
            if self._owner is None:
                return
            current = self._owner()
            if current is not owner and current is not None:
                return
            self._hand_on()

    def _hand_on(self) -> None:
        turn = self.turn
        if turn is not None and turn.held:
            if not self._waiters:
                turn.release()  # nobody here writes next: another process may, without asking
            elif turn.wanted:
                if self._quota > 0:
                    self._quota -= 1
                else:
                    turn.release()
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True
            self._owner, self.since = weakref.ref(waiter.owner), time.monotonic()
            self.grants += 1
            wait = self.since - waiter.since
            self.waited += wait
            self.waits[bisect_left(WAIT_BUCKETS, wait)] += 1
            waiter.owner = None
            waiter.ready.release()
        else:
            self._owner = None

    def _turn_wanted(self) -> None:
        """Another process asked for the turn: pass it on now if no writer is in, else
        after the writers already queued here."""
        with self._lock:
            if self._owner is None:
                self.turn.release()  # type: ignore[union-attr]
            else:
                self._quota = min(len(self._waiters), QUOTA)

    def _turn_revoked(self) -> None:
        """The coordinator took the turn back: an idle transaction here is rolled back."""
        owner = self.owner
        if owner is not None:
            owner._revoke_write(math.inf)

    def stats(self) -> tuple[int, float, list[int], int]:
        """Grants, seconds waited, waits by bucket and timeouts, read together."""
        with self._lock:
            return self.grants, self.waited, list(self.waits), self.timeouts

    def _revoke_overdue(self) -> None:
        ref = self._owner
        owner = ref() if ref is not None else None
        if owner is None:
            if ref is not None:
                with self._lock:  # the holder was collected without releasing
                    if self._owner is ref:
                        self._hand_on()
            return
        owner._revoke_write(time.monotonic() - self.since)

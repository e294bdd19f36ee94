"""The writer gate: one write transaction at a time per pool, first come first served.

Writers wait here for their turn, up to their connection's ``timeout``,
instead of colliding inside SQLite with ``database is locked``. A holder that
keeps the gate longer than ``max_hold`` while idle is revoked by the next
waiter, so one forgotten transaction cannot stop every other writer.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from typing import Any

_POLL = 0.05


class _Waiter:
    __slots__ = ("owner", "event", "granted")

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.event = threading.Event()
        self.granted = False


class WriterGate:
    """A FIFO lock with timeouts and revocation of idle, overdue holders."""

    def __init__(self, max_hold: float | None) -> None:
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()
        self.owner: Any = None
        self.since = 0.0
        self.max_hold = max_hold

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def acquire(self, owner: Any, timeout: float) -> None:
        """Wait until ``owner`` holds the gate; OperationalError after ``timeout``."""
        with self._lock:
            if self.owner is None and not self._waiters:
                self.owner, self.since = owner, time.monotonic()
                return
            waiter = _Waiter(owner)
            self._waiters.append(waiter)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if waiter.event.wait(min(max(remaining, 0.0), _POLL)):
                return
            self._revoke_overdue()
            if remaining <= 0:
                with self._lock:
                    if waiter.granted:
                        return
                    self._waiters.remove(waiter)
                raise sqlite3.OperationalError("database is locked")

    def release(self, owner: Any) -> None:
        """Hand the gate to the longest waiter, if ``owner`` holds it."""
        with self._lock:
            if self.owner is not owner:
                return
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.granted = True
                self.owner, self.since = waiter.owner, time.monotonic()
                waiter.event.set()
            else:
                self.owner = None

    def _revoke_overdue(self) -> None:
        owner = self.owner
        if owner is None or self.max_hold is None:
            return
        if time.monotonic() - self.since > self.max_hold:
            owner._revoke_write(self.max_hold)

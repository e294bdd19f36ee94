"""Finalizer work that takes locks, kept out of garbage collections.

A collection runs in whichever thread allocates when it is due, including a thread
inside one of mpsqlite's locks; a finalizer that took that lock again would hang the
thread for good (a connection dropped without ``close()``, collected while another
was being opened). Work handed to :func:`soon` runs at once outside a collection,
else at the next ``connect()``, ``close()``, write, ``pool_status()`` or
``shutdown()``. It imports nothing from the package.
"""

from __future__ import annotations

import gc
import queue
from collections.abc import Callable
from typing import Any

_queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
_collecting = False


def _phase(phase: str, _info: dict[str, Any]) -> None:
    global _collecting
    _collecting = phase == "start"


gc.callbacks.append(_phase)


def collecting() -> bool:
    """Whether the garbage collector is running (in any thread)."""
    return _collecting


def soon(fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)`` now, or after the collection that is running."""
    if _collecting:
        _queue.put((fn, args))  # SimpleQueue.put: safe to call from a finalizer
    else:
        fn(*args)


def run() -> None:
    """Run the work :func:`soon` put off. The caller holds no lock that this work takes:
    none of the registry's, the gates', the pools' or the coordinators' (a connection's
    own statement lock is none of these)."""
    while not _queue.empty():
        try:
            fn, args = _queue.get_nowait()
        except queue.Empty:
            return
        try:
            fn(*args)
        except Exception:  # noqa: S110 - a finalizer's failure has no caller to tell
            pass

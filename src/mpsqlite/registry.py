"""The process-wide table of pools: one per database, shared by its connections.

Also owns what must happen to every pool at once: converters registered
after start, shutdown at interpreter exit, and forgetting the parent's pools
in a child created by ``os.fork``.
"""

from __future__ import annotations

import atexit
import os
import pickle
import sqlite3
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import protocol as p
from .pool import Pool

_lock = threading.Lock()
_pools: dict[tuple, Pool] = {}
# Converters registered through mpsqlite, each with its pickle from registration
# time: a closure that later refers to something unpicklable still travels.
_converters: dict[str, tuple[Callable[[bytes], Any], bytes]] = {}
_owner_pid = os.getpid()

LINGER_SECONDS = 10.0

LINGER_SECONDS = 10.0


def _by_reference(obj: Any) -> bool:
    """Whether plain pickle's by-name reference to ``obj`` resolves in a worker."""
    if isinstance(obj, (tuple, list)):
        return all(_by_reference(item) for item in obj)
    if isinstance(obj, dict):
        return all(_by_reference(item) for item in obj.values())
    if callable(obj):
        module = getattr(obj, "__module__", None) or ""
        qualname = getattr(obj, "__qualname__", "") or ""
        return module != "__main__" and "<" not in qualname
    return type(obj).__module__ != "__main__"


def _dumps(obj: Any) -> bytes:
    """Pickle by reference where that works in a worker, else by value (cloudpickle).

    Lambdas, closures and what ``__main__`` defines need cloudpickle; module
    functions pickle by name, which spares the worker importing cloudpickle.
    """
    if _by_reference(obj):
        try:
            return pickle.dumps(obj, p._PROTOCOL)
        except Exception:
            pass
    import cloudpickle

    return cloudpickle.dumps(obj, p._PROTOCOL)


def dumps_callable(obj: Any, what: str) -> bytes:
    """Serialize a user callable for the workers, or say clearly why not."""
    try:
        return _dumps(obj)
    except Exception as exc:
        raise sqlite3.ProgrammingError(
            f"{what} {obj!r} cannot be sent to the mpsqlite worker processes: {exc}"
        ) from exc


def register_converter(typename: str, converter: Callable[[bytes], Any]) -> None:
    """sqlite3.register_converter, also applied in every worker of every pool."""
    blob = dumps_callable((typename, converter), "converter")
    sqlite3.register_converter(typename, converter)
    with _lock:
        _converters[typename.upper()] = (converter, blob)
        pools = list(_pools.values())
    for pool in pools:
        pool.add_setup((p.SETUP_CONVERTER, typename, blob))


def converter_blobs() -> list[bytes]:
    """The converters a new worker must know, each pickled ``(name, converter)``.

    That is sqlite3's registry (mpsqlite.register_converter also fills it),
    less the date/time converters sqlite3 installs itself. One that cannot be
    pickled raises ProgrammingError naming it; pools without ``detect_types``
    never ask, since their workers never convert.
    """
    blobs = []
    for name, conv in list(sqlite3.converters.items()):
        if name in ("DATE", "TIMESTAMP") and getattr(conv, "__module__", "") == "sqlite3.dbapi2":
            continue
        known = _converters.get(name)
        if known is not None and known[0] is conv:
            blobs.append(known[1])
        else:
            blobs.append(dumps_callable((name, conv), "converter"))
    return blobs


def get_pool(key: tuple, factory: Callable[[], Pool]) -> Pool:
    """The live pool for ``key``, created by ``factory`` if there is none."""
    _check_fork()
    with _lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            pool = factory()
            _pools[key] = pool
        pool.refs += 1
        return pool


def put_pool(pool: Pool) -> None:
    """Drop a connection's reference.

    A private pool dies with its connection; a shared one lingers for
    ``LINGER_SECONDS`` so that code which connects per request does not pay
    for starting workers each time.
    """
    with _lock:
        pool.refs -= 1
        if pool.refs > 0 or pool.closed:
            return
        if not pool.private and not sys.is_finalizing():
            timer = threading.Timer(LINGER_SECONDS, _close_if_unused, (pool,))
            timer.daemon = True
            timer.start()
            return
        if _pools.get(pool.key) is pool:
            del _pools[pool.key]
    pool.close()


def _close_if_unused(pool: Pool) -> None:
    with _lock:
        if pool.refs > 0 or _pools.get(pool.key) is not pool:
            return
        del _pools[pool.key]
    pool.close()


def pool_status() -> list[dict[str, Any]]:
    """One status dict per live pool in this process (see Pool.status)."""
    with _lock:
        pools = list(_pools.values())
    return [pool.status() for pool in pools]


def shutdown() -> None:
    """Stop every pool in this process; new connections start new pools."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def _check_fork() -> None:
    global _owner_pid
    if os.getpid() != _owner_pid:
        _after_fork_in_child()


def _after_fork_in_child() -> None:
    """A forked child never uses its parent's workers (nor keeps them alive)."""
    global _lock, _owner_pid
    _owner_pid = os.getpid()
    _lock = threading.Lock()
    for pool in list(_pools.values()):
        pool.forget()
    _pools.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)

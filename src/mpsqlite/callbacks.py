"""Connection methods that install callables in every worker of the pool.

sqlite3 registers functions, aggregates, collations and hooks on one
connection; mpsqlite's statements may run on any worker, so each
registration is recorded in the pool's setup list, applied by every worker
before its next request (and by new workers at start), and checked on one
worker at once so that a callable that cannot travel fails here, clearly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import protocol as p
from .registry import dumps_callable

if TYPE_CHECKING:
    from .pool import Pool

# How many leading arguments name what a registration sets (function name, arity...).
_KEY_ARGS = {"create_function": 2, "create_aggregate": 2, "create_window_function": 2,
             "create_collation": 1, "setlimit": 1, "load_extension": 1}


class CallbacksMixin:
    """create_function and friends, pool-wide."""

    _pool: Pool

    def _check(self) -> None:
        raise NotImplementedError

    def _call(self, name: str, *args: Any) -> Any:
        raise NotImplementedError

    def _broadcast(self, method: str, what: str, obj: Any, *args: Any, **kwargs: Any) -> None:
        """Register a connection-level callback in every worker, checked on one now."""
        self._check()
        entry = (p.SETUP_CALL, method, dumps_callable((method, args, kwargs), what))
        key = (method, *args[: _KEY_ARGS.get(method, 0)])
        if not self._pool.add_setup(entry, key):
            return
        try:
            self._call("pid")
        except BaseException:
            self._pool.remove_setup(entry)
            raise

    def create_function(
        self, name: str, narg: int, func: Callable[..., Any] | None, *, deterministic: bool = False
    ) -> None:
        """Define an SQL function in every worker (lambdas and closures too)."""
        self._broadcast("create_function", "function", func, name, narg, func,
                        deterministic=deterministic)

    def create_aggregate(self, name: str, n_arg: int, aggregate_class: Any) -> None:
        """Define an SQL aggregate in every worker."""
        self._broadcast("create_aggregate", "aggregate", aggregate_class, name, n_arg,
                        aggregate_class)

    def create_window_function(self, name: str, num_params: int, aggregate_class: Any, /) -> None:
        """Define an SQL window function in every worker."""
        self._broadcast("create_window_function", "window function", aggregate_class, name,
                        num_params, aggregate_class)

    def create_collation(self, name: str, callable: Callable[[str, str], int] | None, /) -> None:
        """Define a collation in every worker."""
        self._broadcast("create_collation", "collation", callable, name, callable)

    def set_authorizer(self, authorizer_callback: Any) -> None:
        """Install an authorizer in every worker (it runs there)."""
        self._broadcast("set_authorizer", "authorizer", authorizer_callback, authorizer_callback)

    def set_progress_handler(self, progress_handler: Any, n: int) -> None:
        """Install a progress handler in every worker (it runs there)."""
        self._broadcast("set_progress_handler", "progress handler", progress_handler,
                        progress_handler, n)

    def set_trace_callback(self, trace_callback: Any) -> None:
        """Install a trace callback in every worker (it runs there)."""
        self._broadcast("set_trace_callback", "trace callback", trace_callback, trace_callback)

    def enable_load_extension(self, enabled: bool, /) -> None:
        """Allow or forbid loading extensions in every worker."""
        self._broadcast("enable_load_extension", "setting", None, enabled)

    def load_extension(self, name: str, /) -> None:
        """Load an SQLite extension into every worker."""
        self._broadcast("load_extension", "extension", None, name)

    def setlimit(self, category: int, limit: int, /) -> int:
        """Set a limit in every worker; returns the previous value."""
        old = self.getlimit(category)
        self._broadcast("setlimit", "limit", None, category, limit)
        return old

    def getlimit(self, category: int, /) -> int:
        """A connection limit as the workers have it."""
        return self._call("getlimit", category)

"""What a worker replays to stand in for a connection, and what keeps a connection local.

Settings made through the API (functions, collations, limits) and through SQL
(``PRAGMA`` settings, ``ATTACH``) are recorded in the order made, the last of each
(a pragma by schema and name, an attachment by schema name, which ``DETACH`` takes
out); a worker replays them before it runs one of this connection's statements.
Callbacks, extensions, TEMP objects and in-memory attachments keep every statement in
the caller.
"""

from __future__ import annotations

import pickle
import sqlite3
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import _sql
from ._database import Database

if TYPE_CHECKING:
    from ._wire import Settings

_cursor_execute = sqlite3.Cursor.execute
#: Python 3.13 deprecates passing these methods' leading parameters by keyword.
_KEYWORDS_DEPRECATED = sys.version_info >= (3, 13)
_POSITIONAL_LATER = {
    "create_function": ("name", "narg", "func"),
    "create_aggregate": ("name", "n_arg", "aggregate_class"),
    "set_authorizer": ("authorizer_callback",),
    "set_progress_handler": ("progress_handler",),
    "set_trace_callback": ("trace_callback",),
}


def _names(names: tuple[str, ...]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def by_position(method: str, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Python 3.13's warning for ``method``'s leading parameters passed by keyword, raised
    at the caller of mpsqlite's override (sqlite3 raises it from C at its caller's line),
    and the arguments with those passed by position, so that sqlite3 does not warn again."""
    names = _POSITIONAL_LATER[method]
    rest = names[len(args):]
    if not _KEYWORDS_DEPRECATED or not rest or not all(n in kwargs for n in rest):
        return args, kwargs  # nothing to say, or sqlite3's TypeError for a missing one
    s = "s" if len(names) > 1 else ""
    warnings.warn(f"Passing keyword argument{s} {_names(names)} to "
                  f"_sqlite3.Connection.{method}() is deprecated. Parameter{s} "
                  f"{_names(names)} will become positional-only in Python 3.15.",
                  DeprecationWarning, stacklevel=3)
    kwargs = dict(kwargs)
    return (*args, *(kwargs.pop(n) for n in rest)), kwargs


def _exec(con: sqlite3.Connection, sql: str, params: Any = ()) -> sqlite3.Cursor:
    """Run mpsqlite's own statement on ``con``, past mpsqlite's cursor (on 3.10 sqlite3's
    ``Connection.execute`` calls a subclass's cursor) and the application's row factory."""
    return _cursor_execute(sqlite3.Cursor(con), sql, params)


_STMT_TABLE = True  # SQLite has the sqlite_stmt virtual table (SQLITE_ENABLE_STMTVTAB)


@contextmanager
def no_busy_wait(con: sqlite3.Connection, busy_ms: int | None = None,
                 zeroed: bool = False) -> Iterator[None]:
    """Statements that must not wait for another connection's lock (busy timeout 0), then
    the busy timeout back: ``busy_ms``, or (None) the one set before; ``zeroed``: the
    timeout is 0 already."""
    if busy_ms is None:
        busy_ms = int(_exec(con, "PRAGMA busy_timeout").fetchone()[0])
    if not zeroed:
        _exec(con, "PRAGMA busy_timeout=0")
    try:
        yield
    finally:
        _exec(con, f"PRAGMA busy_timeout={busy_ms}")


def _shippable(obj: Any) -> bytes:
    """Pickle a replay entry for a worker: module-level callables by reference,
    lambdas, closures and what ``__main__`` defines by value (cloudpickle)."""
    import cloudpickle

    data: bytes = cloudpickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    return data


class Replayed(sqlite3.Connection):
    """The replay record and offload eligibility of :class:`mpsqlite.Connection`."""

    _db: Database | None = None
    _key: int
    _offload: bool
    _detect_types: int
    _connect: tuple[str, bool, float]
    _replay: dict[Any, tuple[Any, ...]]
    _replay_version: int
    _shipped: tuple[int, int, Settings] | None  # what _worker_settings returned last
    _local_only: str | None  # why this connection never offloads
    _watched = False  # a trace, authorizer or progress callback has been set
    _state_ok: bool  # no TEMP objects or in-memory attachments (checked lazily)
    _udfs: frozenset[str]
    _udf_sql: dict[str, bool]

    def _calls_python(self, sql: str) -> bool:
        """Whether ``sql`` calls one of this connection's Python functions."""
        hit = self._udf_sql.get(sql)
        if hit is None:
            if len(self._udf_sql) > 1024:
                self._udf_sql.clear()
            hit = self._udf_sql[sql] = _sql.mentions(sql, self._udfs)
        return hit

    def _can_offload(self, cursor: Any) -> bool:
        if not self._offload or self._local_only is not None or self.in_transaction:
            return False
        if self._detect_types or self.text_factory is not str:
            return False
        if not self._state_ok:
            temp, memory = self._own_query(
                "SELECT (SELECT count(*) FROM temp.sqlite_master), (SELECT count(*) FROM "
                "pragma_database_list WHERE file = '' AND name != 'temp')")
            if temp or memory:
                return False
            self._state_ok = True
        return not self._reading_elsewhere(cursor)

    def _own_query(self, sql: str) -> tuple[Any, ...]:
        """One row of mpsqlite's own query, whatever row factory the application set."""
        row: tuple[Any, ...] = _exec(self, sql).fetchone()
        return row

    def _reading_elsewhere(self, cursor: Any) -> bool:
        """Whether another statement of this connection is part-way through its rows: it
        holds a snapshot (and table locks) that a worker's read would not share."""
        global _STMT_TABLE
        if not _STMT_TABLE:
            return False  # SQLite built without the sqlite_stmt table: cannot tell
        try:
            _cursor_execute(cursor, "")  # ends its previous read; no description, as sqlite3
        except sqlite3.Error:
            pass  # 3.12+: "" on a new cursor raises the connection's last error, if any
        busy: int
        try:
            (busy,) = self._own_query("SELECT count(*) FROM sqlite_stmt WHERE busy")
        except sqlite3.OperationalError:
            _STMT_TABLE = False
            return False
        return busy > 1  # this query itself is one

    def _record(self, key: Any, entry: tuple[Any, ...]) -> None:
        """Note a setting a worker must replay to stand in for this connection."""
        self._replay.pop(key, None)
        self._replay[key] = entry
        self._replay_version += 1
        self._shipped = None

    def _attached(self, sql: str, params: Any) -> None:
        """Note an ATTACH or DETACH that ran: a worker replays the attachments there are now,
        by schema name, so a DETACH takes its ATTACH out (an application that attaches per
        request must not make every worker replay its history). A statement not read as
        either is kept, in the order made."""
        named = _sql.attachment(sql)
        if named is not None and not named[0] and ("attach", named[1]) in self._replay:
            del self._replay["attach", named[1]]
            self._replay_version += 1
            self._shipped = None
        elif named is not None and named[0]:
            self._record(("attach", named[1]), ("sql", sql, params))
        else:
            self._record(("attach", self._replay_version), ("sql", sql, params))

    def _worker_settings(self) -> tuple[int, int, Settings] | None:
        """``(key, version, settings)`` for the wire, or None if they cannot travel."""
        shipped = self._shipped
        if shipped is None or shipped[1] != self._replay_version:
            entries = []
            try:
                for entry in self._replay.values():
                    if entry[0] == "call":
                        entries.append(("call", _shippable(entry[1])))
                    else:
                        entries.append(entry)
            except Exception as exc:
                self._refuse_offload(f"a registered callable cannot travel: {exc!r}")
                return None
            db = self._db
            if db is None:
                return None
            target, uri, timeout = self._connect
            # The identity is the file this connection opened, whatever the name holds now.
            connect = (target if uri else db.path, uri, timeout, db.key)
            from . import _wire

            shipped = self._shipped = (self._key, self._replay_version,
                                       _wire.settings(connect, entries))
        return shipped

    def _refuse_offload(self, why: str) -> None:
        self._local_only = why

    def _registered(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                    key_len: int) -> None:
        key = (method, *(str(a).lower() if isinstance(a, str) else a for a in args[:key_len]))
        self._record(key, ("call", (method, args, kwargs)))

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            args, kwargs = by_position("create_function", args, kwargs)
        super().create_function(*args, **kwargs)
        name = args[0] if args else kwargs.get("name")
        narg = args[1] if len(args) > 1 else kwargs.get("narg", kwargs.get("num_params"))
        self._record(("create_function", str(name).lower(), narg),
                     ("call", ("create_function", args, kwargs)))
        self._udfs = self._udfs | {str(name).lower()}
        self._udf_sql.clear()

    def create_aggregate(self, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            args, kwargs = by_position("create_aggregate", args, kwargs)
        super().create_aggregate(*args, **kwargs)
        self._registered("create_aggregate", args, kwargs, 2)
        name = args[0] if args else kwargs.get("name")
        self._udfs = self._udfs | {str(name).lower()}
        self._udf_sql.clear()

    if hasattr(sqlite3.Connection, "create_window_function"):

        def create_window_function(self, *args: Any, **kwargs: Any) -> None:
            super().create_window_function(*args, **kwargs)  # type: ignore[misc]  # 3.11+
            self._registered("create_window_function", args, kwargs, 2)
            self._udfs = self._udfs | {str(args[0]).lower()}
            self._udf_sql.clear()

    def create_collation(self, *args: Any, **kwargs: Any) -> None:
        super().create_collation(*args, **kwargs)
        self._registered("create_collation", args, kwargs, 1)

    def setlimit(self, *args: Any, **kwargs: Any) -> int:
        old: int = super().setlimit(*args, **kwargs)  # type: ignore[misc]  # 3.11+
        self._registered("setlimit", args, kwargs, 1)
        return old

    def set_authorizer(self, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            args, kwargs = by_position("set_authorizer", args, kwargs)
        super().set_authorizer(*args, **kwargs)
        self._callback_set("authorizer", args, kwargs)

    def set_progress_handler(self, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            args, kwargs = by_position("set_progress_handler", args, kwargs)
        super().set_progress_handler(*args, **kwargs)
        self._callback_set("progress handler", args, kwargs)

    def set_trace_callback(self, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            args, kwargs = by_position("set_trace_callback", args, kwargs)
        super().set_trace_callback(*args, **kwargs)
        self._callback_set("trace callback", args, kwargs)

    def _callback_set(self, what: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if any(a is not None for a in (*args[:1], *kwargs.values())):
            self._local_only = f"a {what} is set: statements run where it can see them"
            self._watched = True

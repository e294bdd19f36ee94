"""SQLite transaction recipe so that BEGIN, SAVEPOINT and rollback behave as documented.

The stdlib ``sqlite3`` driver (and drivers copying it) in its default "legacy transaction
control" mode does not emit BEGIN before SELECT or SAVEPOINT, so ``Session.begin_nested()``
can commit on its own and survive a later rollback. This applies SQLAlchemy's documented
event recipe: the driver's own BEGIN is switched off and SQLAlchemy emits BEGIN itself.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

_MODES = ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")


def enable_sqlite_transactions(engine: Engine, mode: str = "DEFERRED") -> Engine:
    """Make *engine* emit ``BEGIN <mode>`` itself; needed for savepoints on ``sqlite://``.

    ``mode="IMMEDIATE"`` takes the write lock at the start of every transaction, which trades
    read concurrency for never failing a lock upgrade midway. Call before the engine's first
    connection (existing pooled connections are disposed). A no-op for dialects that emit
    BEGIN themselves, as ``sqlite+mpsqlite`` does by default. Returns the engine.
    """
    mode = mode.upper()
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}")
    if engine.dialect.name != "sqlite":
        raise ValueError("enable_sqlite_transactions() is for SQLite engines only")
    own_mode = getattr(engine.dialect, "begin_mode", "driver")
    if own_mode != "driver":
        # The dialect emits BEGIN itself already (sqlite+mpsqlite does by default;
        # its "write" mode sends a deferred BEGIN at the first write).
        own_sql_mode = "DEFERRED" if own_mode in ("write", "deferred") else own_mode.upper()
        if own_sql_mode != mode:
            raise ValueError(
                f"this engine's dialect already begins transactions with mode {own_mode!r}; "
                "choose the mode with its own option (e.g. ?begin=immediate in the URL)"
            )
        return engine
    begin = "BEGIN" if mode == "DEFERRED" else f"BEGIN {mode}"

    def _connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None

    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    event.listen(engine, "connect", _connect)
    event.listen(engine, "begin", _begin)
    engine.dispose()
    return engine

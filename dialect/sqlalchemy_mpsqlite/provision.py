"""Test provisioning hooks for SQLAlchemy's test plugin (loaded only by the compliance suite).

``Dialect.load_provisioning()`` imports ``<dialect package>.provision``. The
``sqlite`` backend's hooks (file names, upserts, temp tables, cleanup) are
SQLAlchemy's own and apply to this dialect, whose backend name is ``sqlite``.
One differs: the sqlite hook ATTACHes ``test_schema`` on each new connection of
the configured engine only, while some fixtures open file-database connections
through other engines, which then lack the schema (stock pysqlite on a file
fails the same way). For mpsqlite the ATTACH goes on every new connection of
every engine in the test process.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.sqlite import provision as _sqlite_provision
from sqlalchemy.pool import Pool
from sqlalchemy.testing.provision import post_configure_engine

# lets the sqlite hooks recognise our driver name in test database file names
_sqlite_provision._drivernames.add("mpsqlite")
_stock_post_configure_engine = post_configure_engine.fns["sqlite"]


@post_configure_engine.for_db("sqlite")
def _post_configure_engine(url: Any, engine: Any, follower_ident: str | None) -> None:
    if engine.driver != "mpsqlite":
        _stock_post_configure_engine(url, engine, follower_ident)
        return
    import mpsqlite

    prefix = f"{follower_ident}_" if follower_ident else ""
    attach_path = os.path.abspath(f"{prefix}{engine.driver}_test_schema.db")

    def attach(dbapi_connection: Any, connection_record: Any) -> None:
        if not isinstance(dbapi_connection, mpsqlite.Connection):
            return  # another driver's connection, or a test's mock
        names = [row[1] for row in dbapi_connection.execute("PRAGMA database_list")]
        if "test_schema" not in names:
            dbapi_connection.execute(f'ATTACH DATABASE "{attach_path}" AS test_schema')

    # On the engine, as the sqlite hook does (a test that clears class-level listeners
    # keeps it), and on every pool, for the fixtures' other engines.
    event.listen(engine, "connect", attach)
    event.listen(Pool, "connect", attach)
    engine.pool.dispose()

    @event.listens_for(engine, "engine_disposed")
    def dispose(engine: Any) -> None:
        """As the sqlite hook: each test class starts from empty files."""
        for path in (attach_path, engine.url.database):
            if path and path != ":memory:" and os.path.exists(path):
                os.remove(path)

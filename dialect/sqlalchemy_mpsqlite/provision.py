"""Test provisioning hooks for SQLAlchemy's test plugin (loaded only by the compliance suite).

``Dialect.load_provisioning()`` imports ``<dialect package>.provision``; the
``sqlite`` backend hooks (file names, upserts, temp tables, cleanup) are
SQLAlchemy's own and apply to this dialect because its backend name is
``sqlite``.  One hook differs: the ``test_schema`` ATTACH that the sqlite hook
runs on every new DBAPI connection.  mpsqlite applies ATTACH to its whole
worker pool, which every connection to the same file shares, so a second
connection's identical ATTACH finds the schema attached already; and the
database files are left in place when an engine is disposed.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.sqlite import provision as _sqlite_provision
from sqlalchemy.testing.provision import post_configure_engine

# lets the sqlite hooks recognise our driver name in test database file names
_sqlite_provision._drivernames.add("mpsqlite")


def _attached(dbapi_connection: Any, name: str) -> bool:
    rows = dbapi_connection.execute("PRAGMA database_list").fetchall()
    return any(row[1] == name for row in rows)


def _attach_once(dbapi_connection: Any, path: str, name: str) -> None:
    """ATTACH unless the pool has it already."""
    if _attached(dbapi_connection, name):
        return
    try:
        dbapi_connection.execute(f'ATTACH DATABASE "{path}" AS {name}')
    except dbapi_connection.OperationalError as err:
        if "already in use" not in str(err) or not _attached(dbapi_connection, name):
            raise


@post_configure_engine.for_db("sqlite")
def _post_configure_engine(url: Any, engine: Any, follower_ident: str | None) -> None:
    if engine.driver != "mpsqlite":
        _sqlite_provision._sqlite_post_configure_engine(url, engine, follower_ident)
        return
    prefix = f"{follower_ident}_" if follower_ident else ""
    attach_path = os.path.abspath(f"{prefix}{engine.driver}_test_schema.db")

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, connection_record: Any) -> None:
        _attach_once(dbapi_connection, attach_path, "test_schema")

    # Unlike the sqlite hook, no "engine_disposed" listener deletes the files:
    # the worker pool outlives the engine and keeps them open, and a worker
    # restarted later would open a new, empty file under the same name.

r"""SQLAlchemy dialect for mpsqlite: SQLite with a writer queue, group commit and offload.

DBAPI
-----
``mpsqlite`` (this distribution), a DB-API 2.0 drop-in for ``sqlite3``: each
connection is one real SQLite connection, with a FIFO writer gate per file,
group commit, and GIL-heavy reads offloaded to worker processes.

Connecting
----------
Connect String::

    sqlite+mpsqlite:///relative/path/app.db?workers=4
    sqlite+mpsqlite:////absolute/path/app.db
    sqlite+mpsqlite://                 (":memory:": plain sqlite3, one database per connection)

Everything else is SQLAlchemy's own SQLite dialect: this is a thin subclass of
``SQLiteDialect_pysqlite`` that reuses its types, DDL, reflection and SQL
compiler, so ``sqlalchemy.dialects.sqlite.insert``, ``JSON``, ``DATETIME`` and
the rest work unchanged.  ``engine.name`` is ``"sqlite"`` and ``engine.driver``
is ``"mpsqlite"``.

Options
-------
URL query options and ``create_engine(connect_args={...})`` go to
``mpsqlite.connect()``; unknown names and malformed values raise
:class:`sqlalchemy.exc.ArgumentError` naming the option (the stock pysqlite
dialect only warns).  In the URL:

* ``workers=N`` -- most worker processes for offloaded reads (default: one per core).
* ``timeout``, ``detect_types``, ``cached_statements``, ``check_same_thread``,
  ``uri`` -- as for ``sqlite3.connect``, plus any other keyword option that
  ``mpsqlite.connect()`` declares, coerced to the type of its default.
  ``check_same_thread`` defaults to False for file databases, as with pysqlite.
* ``begin=write|deferred|immediate|exclusive|driver`` -- when BEGIN is sent (below);
  also accepted as ``create_engine(url, begin=...)``.
* With ``uri=true``, SQLite's URI parameters (``mode``, ``cache``, ``vfs``,
  ``psow``, ``nolock``, ``immutable``, ``modeof``) are appended to the file name,
  as with pysqlite: ``sqlite+mpsqlite:///file:app.db?mode=ro&uri=true``.

Transactions
------------
The pysqlite driver starts transactions implicitly, and only before
INSERT/UPDATE/DELETE: SELECTs before the first write run outside any
transaction, SAVEPOINT misbehaves (the RELEASE of an outermost savepoint
commits) and DDL is not transactional.  SQLAlchemy's documentation
("Serializable isolation / Savepoints / Transactional DDL") recommends
switching the driver's implicit BEGIN off and emitting BEGIN yourself.  This
dialect switches it off and emits BEGIN itself, lazily; ``begin=`` says when:

* ``begin=write`` (**the default**): right before the first statement of a
  SQLAlchemy transaction that is not a plain read -- INSERT/UPDATE/DELETE, DDL,
  SAVEPOINT.  Reads before it run outside the transaction, exactly as with the
  stock ``sqlite://`` dialect.  From that statement to commit or rollback
  everything is one SQLite transaction inside the file's writer gate: reads see
  the transaction's own writes, SAVEPOINT (``begin_nested()``) and DDL are
  transactional, and a read-then-write transaction never fails to upgrade its
  lock (its reads were not in it).  The BEGIN is deferred when that statement
  writes (it takes the gate and the lock of the database it writes), and
  ``BEGIN IMMEDIATE`` when it is a SAVEPOINT; so an attached database is locked
  only once the transaction writes it.
* ``begin=deferred``: right before the first statement, whatever it is.  A
  ``Session`` is then one SQLite transaction from its first statement, its
  reads all from one snapshot.  As in sqlite3, a deferred transaction takes the
  writer gate at its first write; one that read first can fail with
  ``database is locked`` if another connection committed in between.
* ``begin=immediate`` / ``exclusive``: as ``deferred``, with ``BEGIN
  IMMEDIATE`` (``EXCLUSIVE``), which takes the writer gate at once: such
  transactions queue, one at a time, and never fail to upgrade.
* ``begin=driver``: the stock pysqlite behaviour (the driver's implicit BEGIN
  before DML only), with its SAVEPOINT pitfall.

BEGIN never goes out at ``Connection.begin()`` itself.  Statements sent on the
raw DBAPI connection (``conn.connection.cursor()``) bypass the dialect and do
not trigger the pending BEGIN; a transaction whose first statement is a BEGIN of
its own (``conn.exec_driver_sql("BEGIN IMMEDIATE")``) uses that one instead.

Isolation levels: ``SERIALIZABLE`` (default), ``READ UNCOMMITTED`` and
``AUTOCOMMIT``, e.g. ``create_engine(url, isolation_level="AUTOCOMMIT")`` or
``conn.execution_options(isolation_level="AUTOCOMMIT")``.  Under AUTOCOMMIT no
BEGIN is sent.  The level is kept by the dialect rather than sent as a PRAGMA.

Pooling
-------
File databases use :class:`~sqlalchemy.pool.QueuePool` and ``:memory:`` uses
:class:`~sqlalchemy.pool.SingletonThreadPool`, as stock pysqlite does.  A
checked-out connection's ``regexp``/``floor`` functions are registered once, at
connect; a worker standing in for the connection replays them.

A worker that dies (killed, crashed) makes mpsqlite raise ``OperationalError``
mentioning that the worker process died; :meth:`MPSQLiteDialect.is_disconnect`
recognises it, so SQLAlchemy invalidates the pool and the next checkout gets a
fresh connection (``pool_pre_ping=True`` also works).  Workers only read, so
nothing was lost.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sqlalchemy import exc, pool
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from mpsqlite._sql import Kind, kind

from . import _options, functions

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import ConnectArgsType, DBAPIConnection
    from sqlalchemy.engine.url import URL

_BEGIN_SQL = {
    "write": "BEGIN IMMEDIATE",  # the first statement is a SAVEPOINT (a write: BEGIN): queue now
    "deferred": "BEGIN",
    "immediate": "BEGIN IMMEDIATE",
    "exclusive": "BEGIN EXCLUSIVE",
}

_WRITES_AT_ONCE = frozenset({Kind.WRITE, Kind.TEMP})  # begin=write: no IMMEDIATE needed

_OUTSIDE_TRANSACTION = frozenset({
    Kind.READ, Kind.EMPTY, Kind.PRAGMA_SET, Kind.SYNC_SET, Kind.SYNC_QUERY, Kind.ATTACH,
})

_DISCONNECT_FRAGMENTS = ("connection is closed", "cannot operate on a closed database")


def _raw(connection: Any) -> Any:
    """The DBAPI connection behind a pool proxy (or the connection itself)."""
    return getattr(connection, "dbapi_connection", connection)


def _is_dead_worker_message(message: str) -> bool:
    lowered = message.lower()
    if "worker process" in lowered and ("died" in lowered or "exited" in lowered):
        return True
    return any(fragment in lowered for fragment in _DISCONNECT_FRAGMENTS)


class MPSQLiteDialect(SQLiteDialect_pysqlite):
    """SQLite dialect whose DBAPI is mpsqlite; see the module docstring."""

    driver = "mpsqlite"
    supports_statement_cache = True

    def __init__(self, begin: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.begin_mode = self._validated_begin(begin or "write")
        # isolation level per DBAPI connection, kept here because mpsqlite
        # would apply PRAGMA read_uncommitted to the whole pool (module docstring)
        self._levels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._autocommit: weakref.WeakSet[Any] = weakref.WeakSet()
        # connections whose SQLAlchemy transaction has begun but sent no statement yet
        self._pending_begin: weakref.WeakSet[Any] = weakref.WeakSet()

    @staticmethod
    def _validated_begin(value: str) -> str:
        try:
            return _options._to_begin(value)
        except ValueError as err:
            raise exc.ArgumentError(
                f"Invalid value {value!r} for mpsqlite option 'begin': {err}"
            ) from None

    @classmethod
    def import_dbapi(cls) -> Any:
        """Return the ``mpsqlite`` module (defined here so SQLAlchemy does not use sqlite3)."""
        import mpsqlite

        return mpsqlite

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        """QueuePool for files, SingletonThreadPool for ``:memory:`` (see module docstring)."""
        if cls._is_url_file_db(url):
            return pool.QueuePool
        return pool.SingletonThreadPool

    def _driver_connect(self) -> Callable[..., Any]:
        dbapi = self.dbapi
        return dbapi.connect if dbapi is not None else (lambda *a, **k: None)

    def create_connect_args(self, url: URL) -> ConnectArgsType:
        """Turn the URL into ``mpsqlite.connect()`` arguments, validating every option."""
        if url.username or url.password or url.host or url.port:
            raise exc.ArgumentError(
                f"Invalid mpsqlite URL: {url!r}; valid forms are sqlite+mpsqlite:// "
                "(memory), sqlite+mpsqlite:///relative/file.db and "
                "sqlite+mpsqlite:////absolute/file.db"
            )
        driver, dialect_opts, uri_params = _options.parse_url_query(
            url.query, self._driver_connect()
        )
        if "begin" in dialect_opts:
            self.begin_mode = dialect_opts["begin"]
        if "isolation_level" in driver and self.begin_mode != "driver":
            raise exc.ArgumentError(
                "mpsqlite option 'isolation_level' only applies with begin=driver; use "
                "create_engine(url, isolation_level=...) to choose an isolation level"
            )
        filename = url.database or ":memory:"
        if driver.get("uri"):
            if uri_params:
                filename += "?" + urlencode(sorted(uri_params.items()))
        elif filename != ":memory:":
            filename = os.path.abspath(filename)
        if filename != ":memory:":
            # As the stock pysqlite dialect: a file database's QueuePool hands
            # connections from thread to thread.
            driver.setdefault("check_same_thread", False)
        return ([filename], driver)

    def connect(self, *cargs: Any, **cparams: Any) -> DBAPIConnection:
        """Open an mpsqlite connection after validating ``connect_args`` too."""
        _options.check_connect_kwargs(cparams, self._driver_connect())
        return super().connect(*cargs, **cparams)

    def on_connect(self) -> Callable[[DBAPIConnection], None]:
        """Switch off the driver's implicit BEGIN and register ``regexp``/``floor``."""
        explicit = self.begin_mode != "driver"
        # on_connect runs once the DBAPI module is loaded: self.dbapi is not None
        deterministic = self.dbapi.sqlite_version_info >= (3, 9)  # type: ignore[union-attr]
        func_kw = {"deterministic": True} if deterministic else {}

        def connect(dbapi_connection: DBAPIConnection) -> None:
            if explicit:
                dbapi_connection.isolation_level = None
            dbapi_connection.create_function("regexp", 2, functions.regexp, **func_kw)
            dbapi_connection.create_function("floor", 1, math.floor, **func_kw)

        return connect

    def set_isolation_level(self, dbapi_connection: DBAPIConnection, level: Any) -> None:
        """Record the level; only ``begin=driver`` sends it to the driver."""
        if self.begin_mode == "driver":
            super().set_isolation_level(dbapi_connection, level)
        elif level == "AUTOCOMMIT":
            self._autocommit.add(dbapi_connection)
            self._pending_begin.discard(dbapi_connection)
        else:
            self._autocommit.discard(dbapi_connection)
            self._levels[dbapi_connection] = level

    def get_isolation_level(self, dbapi_connection: DBAPIConnection) -> Any:
        """Return the transaction isolation recorded by :meth:`set_isolation_level`."""
        if self.begin_mode == "driver":
            return super().get_isolation_level(dbapi_connection)  # type: ignore[no-untyped-call]
        return self._levels.get(dbapi_connection, "SERIALIZABLE")

    def detect_autocommit_setting(self, dbapi_conn: Any) -> bool:
        """True when the connection is in AUTOCOMMIT."""
        raw = _raw(dbapi_conn)
        if self.begin_mode == "driver":
            return super().detect_autocommit_setting(raw)
        return raw in self._autocommit

    def do_begin(self, dbapi_connection: Any) -> None:
        """Arrange for BEGIN before the transaction's first statement (see module docs).

        Deferring it to the first statement means an idle ``Connection.begin()``
        holds nothing (no writer gate), so a thread may open a second connection meanwhile.
        """
        if self.begin_mode == "driver" or self.detect_autocommit_setting(dbapi_connection):
            return
        self._pending_begin.add(_raw(dbapi_connection))

    def _begin_if_pending(self, cursor: Any, statement: str) -> None:
        if self._pending_begin:
            conn = cursor.connection
            if conn in self._pending_begin:
                if conn.in_transaction:  # a BEGIN of the application's own went out first
                    self._pending_begin.discard(conn)
                    return
                begin = _BEGIN_SQL[self.begin_mode]
                if self.begin_mode == "write":
                    k = kind(statement)
                    if k in _OUTSIDE_TRANSACTION:
                        # reads before the first write stay outside the transaction, and so
                        # do connection settings, which SQLite ignores or refuses inside one
                        return
                    if k in _WRITES_AT_ONCE:
                        # it takes the writer gate and the lock of what it writes itself;
                        # BEGIN IMMEDIATE would also lock every attached database
                        begin = "BEGIN"
                self._pending_begin.discard(conn)
                # a BEGIN of the caller's own (e.g. "BEGIN IMMEDIATE") replaces ours
                if statement.lstrip()[:5].upper() != "BEGIN":
                    cursor.execute(begin)

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        self._begin_if_pending(cursor, statement)
        cursor.execute(statement, parameters)

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        self._begin_if_pending(cursor, statement)
        cursor.execute(statement)

    def do_executemany(
        self, cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        self._begin_if_pending(cursor, statement)
        cursor.executemany(statement, parameters)

    def do_commit(self, dbapi_connection: Any) -> None:
        self._pending_begin.discard(_raw(dbapi_connection))
        super().do_commit(dbapi_connection)  # type: ignore[no-untyped-call]

    def do_rollback(self, dbapi_connection: Any) -> None:
        self._pending_begin.discard(_raw(dbapi_connection))
        super().do_rollback(dbapi_connection)  # type: ignore[no-untyped-call]

    def is_disconnect(self, e: Exception, connection: Any, cursor: Any) -> bool:
        """Recognise a dead worker process and a closed connection."""
        dbapi = self.dbapi
        if dbapi is None or not isinstance(e, dbapi.Error):
            return False
        return _is_dead_worker_message(str(e))


dialect = MPSQLiteDialect

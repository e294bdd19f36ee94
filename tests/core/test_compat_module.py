"""Module-level DB-API names: mpsqlite must expose what sqlite3 exposes, with equal values."""

from __future__ import annotations

import datetime
import sqlite3

import pytest

_EXCEPTIONS = [
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
]
_DATABASE_ERRORS = [
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
]


def test_apilevel(dbapi):
    assert dbapi.apilevel == "2.0"


def test_paramstyle(dbapi):
    assert dbapi.paramstyle == "qmark"


def test_threadsafety_is_a_pep249_level(dbapi):
    assert dbapi.threadsafety in (0, 1, 2, 3)


def test_sqlite_version_is_the_library_version(dbapi):
    assert dbapi.sqlite_version == sqlite3.sqlite_version
    assert dbapi.sqlite_version_info == sqlite3.sqlite_version_info


def test_sqlite_version_is_what_the_database_reports(conn, dbapi):
    (version,) = conn.execute("select sqlite_version()").fetchone()
    assert version == dbapi.sqlite_version


@pytest.mark.parametrize("name", _EXCEPTIONS)
def test_exception_is_the_sqlite3_class(dbapi, name):
    """Identity, so that ``except sqlite3.X`` catches errors raised by mpsqlite."""
    assert getattr(dbapi, name) is getattr(sqlite3, name)


def test_exception_hierarchy(dbapi):
    assert issubclass(dbapi.Warning, Exception)
    assert issubclass(dbapi.Error, Exception)
    assert issubclass(dbapi.InterfaceError, dbapi.Error)
    assert issubclass(dbapi.DatabaseError, dbapi.Error)
    for name in _DATABASE_ERRORS:
        assert issubclass(getattr(dbapi, name), dbapi.DatabaseError), name


@pytest.mark.parametrize("name", _EXCEPTIONS)
def test_connection_exposes_exception_classes(conn, name):
    """PEP 249 optional extension: ``Connection.Error`` and friends."""
    assert getattr(conn, name) is getattr(sqlite3, name)


def test_parse_constants(dbapi):
    assert dbapi.PARSE_DECLTYPES == sqlite3.PARSE_DECLTYPES
    assert dbapi.PARSE_COLNAMES == sqlite3.PARSE_COLNAMES


def test_binary_wraps_bytes(dbapi):
    assert bytes(dbapi.Binary(b"\x00ab")) == b"\x00ab"


@pytest.mark.parametrize(
    ("sql", "complete"),
    [("select 1;", True), ("select 1", False), ("create table t(x); ", True), ("'", False)],
)
def test_complete_statement(dbapi, sql, complete):
    assert dbapi.complete_statement(sql) is complete


def test_date_time_constructors(dbapi):
    assert dbapi.Date(2020, 1, 2) == datetime.date(2020, 1, 2)
    assert dbapi.Time(3, 4, 5) == datetime.time(3, 4, 5)
    assert dbapi.Timestamp(2020, 1, 2, 3, 4, 5) == datetime.datetime(2020, 1, 2, 3, 4, 5)
    ticks = 1_600_000_000
    assert dbapi.DateFromTicks(ticks) == datetime.date.fromtimestamp(ticks)
    assert dbapi.TimestampFromTicks(ticks) == datetime.datetime.fromtimestamp(ticks)
    assert dbapi.TimeFromTicks(ticks) == datetime.datetime.fromtimestamp(ticks).time()


def test_connect_returns_module_connection_and_cursor(conn, dbapi):
    assert isinstance(conn, dbapi.Connection)
    cur = conn.cursor()
    assert isinstance(cur, dbapi.Cursor)
    assert cur.connection is conn


def test_connect_factory_subclass(connect, dbapi):
    class MyConnection(dbapi.Connection):
        marker = "mine"

    conn = connect(factory=MyConnection)
    assert isinstance(conn, MyConnection)
    assert conn.execute("select 41 + 1").fetchone() == (42,)


def test_cursor_factory_subclass(conn, dbapi):
    class MyCursor(dbapi.Cursor):
        marker = "mine"

    cur = conn.cursor(factory=MyCursor)
    assert isinstance(cur, MyCursor)
    assert cur.execute("select 7").fetchone() == (7,)


def test_execute_returns_the_cursor(conn):
    cur = conn.cursor()
    assert cur.execute("select 1") is cur


def test_in_memory_database(connect):
    mem = connect(":memory:")
    mem.execute("create table t(x)")
    mem.execute("insert into t values (1)")
    assert mem.execute("select x from t").fetchall() == [(1,)]


def test_uri_connect_read_only(connect, db_path):
    rw = connect()
    rw.execute("create table t(x)")
    rw.execute("insert into t values (1)")
    rw.commit()
    ro = connect(f"file:{db_path}?mode=ro", uri=True)
    assert ro.execute("select x from t").fetchall() == [(1,)]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.execute("insert into t values (2)")


def test_an_immutable_reader_sees_what_an_open_connection_committed(connect, tmp_path):
    """SQLite reads an ``immutable=1`` file without its WAL (Datasette opens files so):
    what a connection still open has committed must be in the file itself, as it is
    under sqlite3's rollback journal."""
    import urllib.parse

    path = tmp_path / "a%b c.db"
    writer = connect(str(path))
    writer.execute("create table posts(id integer primary key)")
    writer.executemany("insert into posts values (?)", [(1,), (2,)])
    writer.commit()
    for uri in (f"file:{urllib.parse.quote(str(path))}?immutable=1",
                f"file://localhost{urllib.parse.quote(str(path))}?mode=ro&immutable=yes"):
        reader = connect(uri, uri=True)
        assert reader.execute("select id from posts").fetchall() == [(1,), (2,)]
        reader.close()
    assert writer.execute("select count(*) from posts").fetchone() == (2,)


def test_dbapi2_is_the_module_itself(dbapi):
    """``from sqlite3 import dbapi2 as Database`` (Django's backend) gets the same module's
    connect, so code written for sqlite3 that imports it that way gets mpsqlite's."""
    assert dbapi.dbapi2.connect is dbapi.connect
    assert dbapi.dbapi2.Connection is dbapi.Connection

"""Transaction control as in sqlite3: implicit BEGIN before DML, commit/rollback,
isolation_level, the connection context manager, total_changes, autocommit, interrupt."""

from __future__ import annotations

import sqlite3
import sys
from contextlib import closing

import pytest

from tests.core._procs import assert_interrupt_stops_endless_query

_LEVELS = ["", "DEFERRED", "IMMEDIATE", "EXCLUSIVE"]
_needs_autocommit = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="Connection.autocommit exists from Python 3.12"
)


@pytest.fixture
def table(conn):
    """``conn`` with a committed empty table ``t(x)``."""
    conn.execute("create table t(x)")
    conn.commit()
    return conn


def _committed(observer: sqlite3.Connection) -> list[tuple]:
    return observer.execute("select x from t order by x").fetchall()


def test_default_isolation_level(conn):
    assert conn.isolation_level == ""


def test_not_in_transaction_after_connect(conn):
    assert conn.in_transaction is False


def test_no_implicit_begin_before_select(table):
    table.execute("select * from t").fetchall()
    assert table.in_transaction is False


def test_implicit_begin_before_insert(table):
    table.execute("insert into t values (1)")
    assert table.in_transaction is True


@pytest.mark.parametrize(
    "sql", ["update t set x = 2", "delete from t", "replace into t values (3)"]
)
def test_implicit_begin_before_other_dml(table, sql):
    table.execute(sql)
    assert table.in_transaction is True


def test_no_implicit_begin_before_ddl(conn):
    conn.execute("create table other(y)")
    assert conn.in_transaction is False


def test_uncommitted_insert_invisible_to_others(table, observer):
    table.execute("insert into t values (1)")
    assert table.execute("select x from t").fetchall() == [(1,)]
    assert _committed(observer) == []


def test_commit_makes_changes_visible(table, observer):
    table.execute("insert into t values (1)")
    table.commit()
    assert table.in_transaction is False
    assert _committed(observer) == [(1,)]


def test_rollback_discards_changes(table, observer):
    table.execute("insert into t values (1)")
    table.rollback()
    assert table.in_transaction is False
    assert table.execute("select x from t").fetchall() == []
    assert _committed(observer) == []


def test_commit_and_rollback_without_transaction_are_noops(conn):
    conn.commit()
    conn.rollback()
    assert conn.in_transaction is False


def test_select_inside_transaction_stays_in_it(table):
    table.execute("insert into t values (1)")
    table.execute("select * from t").fetchall()
    assert table.in_transaction is True
    table.rollback()
    assert table.execute("select count(*) from t").fetchone() == (0,)


def test_rollback_to_savepoint(table):
    table.execute("insert into t values (1)")
    table.execute("savepoint sp")
    table.execute("insert into t values (2)")
    table.execute("rollback to sp")
    table.commit()
    assert table.execute("select x from t").fetchall() == [(1,)]


@pytest.mark.parametrize("level", _LEVELS)
def test_isolation_level_at_connect(connect, observer, level):
    conn = connect(isolation_level=level)
    assert conn.isolation_level == level
    conn.execute("create table t(x)")
    conn.execute("insert into t values (1)")
    assert conn.in_transaction is True
    conn.commit()
    assert _committed(observer) == [(1,)]


def test_isolation_level_none_is_autocommit(connect, observer):
    conn = connect(isolation_level=None)
    assert conn.isolation_level is None
    conn.execute("create table t(x)")
    conn.execute("insert into t values (1)")
    assert conn.in_transaction is False
    assert _committed(observer) == [(1,)]


def test_isolation_level_none_explicit_begin(connect, observer):
    conn = connect(isolation_level=None)
    conn.execute("create table t(x)")
    conn.execute("begin")
    assert conn.in_transaction is True
    conn.execute("insert into t values (1)")
    assert _committed(observer) == []
    conn.execute("commit")
    assert conn.in_transaction is False
    assert _committed(observer) == [(1,)]


def test_exclusive_transaction_locks_out_readers(connect, observer, dbapi):
    """In rollback-journal mode (mpsqlite switches files to WAL unless wal=False)."""
    extra = {"wal": False} if dbapi.__name__ == "mpsqlite" else {}
    conn = connect(isolation_level="EXCLUSIVE", **extra)
    conn.execute("create table t(x)")
    conn.execute("insert into t values (1)")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        observer.execute("select * from t").fetchall()
    conn.commit()
    assert _committed(observer) == [(1,)]


def test_deferred_transaction_lets_readers_read(connect, observer):
    conn = connect(isolation_level="DEFERRED")
    conn.execute("create table t(x)")
    conn.commit()
    conn.execute("insert into t values (1)")
    assert _committed(observer) == []
    conn.rollback()


def test_change_isolation_level(table):
    for level in ["DEFERRED", "IMMEDIATE", "EXCLUSIVE", "", None]:
        table.isolation_level = level
        assert table.isolation_level == level


def test_setting_isolation_level_none_commits(table, observer):
    table.execute("insert into t values (1)")
    table.isolation_level = None
    assert table.in_transaction is False
    assert _committed(observer) == [(1,)]
    table.execute("insert into t values (2)")
    assert _committed(observer) == [(1,), (2,)]


def test_switch_from_none_back_to_implicit(connect, observer):
    conn = connect(isolation_level=None)
    conn.execute("create table t(x)")
    conn.isolation_level = "IMMEDIATE"
    conn.execute("insert into t values (1)")
    assert conn.in_transaction is True
    assert _committed(observer) == []
    conn.commit()
    assert _committed(observer) == [(1,)]


def test_invalid_isolation_level(conn):
    with pytest.raises(ValueError, match="isolation_level"):
        conn.isolation_level = "BOGUS"
    assert conn.isolation_level == ""


def test_context_manager_commits(table, observer):
    with table as entered:
        assert entered is table
        table.execute("insert into t values (1)")
    assert table.in_transaction is False
    assert _committed(observer) == [(1,)]


def test_context_manager_rolls_back_on_exception(table, observer):
    with pytest.raises(KeyError):
        with table:
            table.execute("insert into t values (1)")
            raise KeyError("boom")
    assert table.in_transaction is False
    assert _committed(observer) == []


def test_context_manager_does_not_close(table):
    with table:
        table.execute("insert into t values (1)")
    assert table.execute("select count(*) from t").fetchone() == (1,)


def test_context_manager_integrity_error_rolls_back(conn, observer):
    conn.execute("create table t(x unique)")
    conn.commit()
    with pytest.raises(sqlite3.IntegrityError):
        with conn:
            conn.execute("insert into t values (1)")
            conn.execute("insert into t values (1)")
    assert observer.execute("select count(*) from t").fetchone() == (0,)


def test_total_changes(table):
    assert table.total_changes == 0
    table.executemany("insert into t values (?)", [(1,), (2,), (3,)])
    assert table.total_changes == 3
    table.execute("update t set x = x + 1 where x >= 2")
    assert table.total_changes == 5
    table.commit()
    table.execute("delete from t")
    assert table.total_changes == 8


def test_total_changes_counts_only_this_connection(table, connect):
    other = connect()
    other.execute("insert into t values (1)")
    other.commit()
    assert table.total_changes == 0
    assert other.total_changes == 1


def test_interrupt_long_query(conn):
    """interrupt() from another thread stops the running query with 'interrupted'."""
    assert_interrupt_stops_endless_query(conn)


@_needs_autocommit
def test_autocommit_default_is_legacy(conn, dbapi):
    assert conn.autocommit == dbapi.LEGACY_TRANSACTION_CONTROL == sqlite3.LEGACY_TRANSACTION_CONTROL


@_needs_autocommit
def test_autocommit_true(connect, observer):
    conn = connect(autocommit=True)
    conn.execute("create table t(x)")
    conn.execute("insert into t values (1)")
    assert conn.in_transaction is False
    assert _committed(observer) == [(1,)]


@_needs_autocommit
def test_autocommit_false_always_in_transaction(connect, observer):
    conn = connect(autocommit=False)
    assert conn.in_transaction is True
    conn.execute("create table t(x)")
    conn.execute("insert into t values (1)")
    conn.commit()
    assert conn.in_transaction is True
    assert _committed(observer) == [(1,)]
    conn.execute("insert into t values (2)")
    conn.rollback()
    assert conn.in_transaction is True
    assert _committed(observer) == [(1,)]


@_needs_autocommit
def test_autocommit_switch(connect, observer):
    conn = connect(autocommit=False)
    conn.execute("create table t(x)")
    conn.autocommit = True
    assert conn.in_transaction is False
    conn.execute("insert into t values (1)")
    assert _committed(observer) == [(1,)]


def test_a_new_connection_prepares_against_the_schema_of_its_first_statement(dbapi, db_path):
    """A table another connection dropped after ours opened is missing at prepare time:
    the failed UPDATE opens no transaction and holds no lock (mpsqlite's own statements
    at connect must not make it prepare on the schema they loaded)."""
    with closing(sqlite3.connect(db_path)) as setup:
        setup.execute("pragma journal_mode=wal")
        setup.execute("create table t0(a)")
        setup.execute("create table u(x)")
        setup.commit()
    with closing(dbapi.connect(str(db_path), timeout=0.2)) as con, \
            closing(dbapi.connect(str(db_path), timeout=0.2)) as other:
        other.execute("drop table t0")
        other.commit()
        with pytest.raises(sqlite3.OperationalError, match="no such table: t0"):
            con.execute("update t0 set a = 1")
        assert not con.in_transaction
        other.execute("insert into u values (1)")  # no lock left behind
        other.commit()

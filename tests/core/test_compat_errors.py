"""Errors: same exception classes, messages and SQLite error codes as sqlite3 raises."""

from __future__ import annotations

import decimal
import sqlite3
import sys
import threading
from contextlib import closing

import pytest

from tests.core._procs import LockHolder

_MODERN = sys.version_info >= (3, 11)
_needs_errorcode = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="sqlite_errorcode/sqlite_errorname exist from 3.11"
)


def _reference_error(sql: str, params=(), setup: str = "") -> BaseException:
    """The exception the stdlib sqlite3 raises for ``sql`` on a fresh in-memory database."""
    ref = sqlite3.connect(":memory:")
    try:
        ref.executescript(setup)
        ref.execute(sql, params).fetchall()
    except Exception as exc:  # noqa: BLE001 - any error is the reference
        return exc
    finally:
        ref.close()
    raise AssertionError(f"sqlite3 raised nothing for {sql!r}")


def _assert_same_error(conn, sql: str, params=(), setup: str = "", kind=sqlite3.Error):
    """Run ``sql`` on ``conn``; assert it raises sqlite3's exact class and message.

    ``kind`` is the class sqlite3 raises from Python 3.11 on (3.10 raised Warning,
    InterfaceError or ValueError in some of these cases; there only equality is checked)."""
    expected = _reference_error(sql, params, setup)
    if _MODERN:
        assert isinstance(expected, kind)
    with pytest.raises(type(expected)) as info:
        conn.execute(sql, params).fetchall()
    assert type(info.value) is type(expected)
    assert str(info.value) == str(expected)
    return info.value


def test_closed_connection_execute(conn):
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError, match=r"^Cannot operate on a closed database\.$"):
        conn.execute("select 1")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.cursor(),
        lambda c: c.commit(),
        lambda c: c.rollback(),
        lambda c: c.executemany("select ?", []),
        lambda c: c.executescript("select 1;"),
        lambda c: c.create_function("f", 0, lambda: 1),
        lambda c: c.total_changes,
        lambda c: c.in_transaction,
    ],
    ids=[
        "cursor",
        "commit",
        "rollback",
        "executemany",
        "executescript",
        "create_function",
        "total_changes",
        "in_transaction",
    ],
)
def test_closed_connection_other_methods(conn, call):
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError, match="Cannot operate on a closed database"):
        call(conn)


def test_close_connection_twice(conn):
    conn.close()
    conn.close()


def test_cursor_of_closed_connection(conn):
    cur = conn.execute("select 1")
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError, match=r"^Cannot operate on a closed database\.$"):
        cur.execute("select 2")
    with pytest.raises(sqlite3.ProgrammingError, match=r"^Cannot operate on a closed database\.$"):
        cur.fetchall()


@pytest.mark.parametrize(
    "call",
    [
        lambda cur: cur.execute("select 1"),
        lambda cur: cur.executemany("select ?", []),
        lambda cur: cur.executescript("select 1;"),
        lambda cur: cur.fetchone(),
        lambda cur: cur.fetchmany(),
        lambda cur: cur.fetchall(),
        lambda cur: next(iter(cur)),
    ],
    ids=["execute", "executemany", "executescript", "fetchone", "fetchmany", "fetchall", "next"],
)
def test_closed_cursor(conn, call):
    cur = conn.execute("select 1 union all select 2")
    cur.close()
    with pytest.raises(sqlite3.ProgrammingError, match=r"^Cannot operate on a closed cursor\.$"):
        call(cur)


def test_connection_still_usable_after_cursor_close(conn):
    conn.cursor().close()
    assert conn.execute("select 1").fetchone() == (1,)


def test_too_few_qmark_params(conn):
    _assert_same_error(conn, "select ?, ?", (1,), kind=sqlite3.ProgrammingError)


def test_too_many_qmark_params(conn):
    _assert_same_error(conn, "select ?", (1, 2), kind=sqlite3.ProgrammingError)


def test_params_given_but_none_used(conn):
    _assert_same_error(conn, "select 1", (1,), kind=sqlite3.ProgrammingError)


def test_missing_named_param(conn):
    _assert_same_error(conn, "select :a, :b", {"a": 1}, kind=sqlite3.ProgrammingError)


def test_executemany_wrong_param_count(conn):
    conn.execute("create table t(a, b)")
    with pytest.raises(sqlite3.ProgrammingError, match="Incorrect number of bindings"):
        conn.executemany("insert into t values (?, ?)", [(1, 2), (3,)])


def test_syntax_error(conn):
    _assert_same_error(conn, "selec 1", kind=sqlite3.OperationalError)


def test_syntax_error_incomplete(conn):
    _assert_same_error(conn, "select * from", kind=sqlite3.OperationalError)


def test_no_such_table(conn):
    _assert_same_error(conn, "select * from missing", kind=sqlite3.OperationalError)


def test_no_such_column(conn):
    conn.execute("create table t(a)")
    _assert_same_error(
        conn, "select b from t", setup="create table t(a);", kind=sqlite3.OperationalError
    )


def test_table_already_exists(conn):
    conn.execute("create table t(a)")
    _assert_same_error(
        conn, "create table t(a)", setup="create table t(a);", kind=sqlite3.OperationalError
    )


def test_syntax_error_in_executescript(conn):
    with pytest.raises(sqlite3.OperationalError, match='near "selec": syntax error'):
        conn.executescript("select 1; selec 2;")


def test_two_statements_in_execute(conn):
    _assert_same_error(conn, "select 1; select 2", kind=sqlite3.ProgrammingError)


def test_executemany_refuses_select(conn):
    with pytest.raises(
        sqlite3.ProgrammingError, match=r"^executemany\(\) can only execute DML statements\.$"
    ):
        conn.executemany("select ?", [(1,)])


@pytest.mark.parametrize("sql", [["select 1"], {"select 1": 1}, b"select 1", 1, None],
                         ids=["list", "dict", "bytes", "int", "none"])
@pytest.mark.parametrize("how", ["connection", "cursor", "executemany"])
def test_sql_that_is_no_str(conn, sql, how):
    ref = sqlite3.connect(":memory:")
    calls = {
        "connection": lambda c: c.execute(sql),
        "cursor": lambda c: c.cursor().execute(sql),
        "executemany": lambda c: c.executemany(sql, []),
    }
    with pytest.raises(TypeError) as expected:
        calls[how](ref)
    ref.close()
    with pytest.raises(TypeError) as got:
        calls[how](conn)
    assert str(got.value) == str(expected.value)
    assert conn.execute("select 1").fetchone() == (1,)


_UNIQUE_SETUP = (
    "create table u(id integer primary key, name text unique not null);"
    "insert into u values (1, 'a');"
)


def _violate(conn, sql: str) -> sqlite3.IntegrityError:
    conn.executescript(_UNIQUE_SETUP)
    return _assert_same_error(conn, sql, setup=_UNIQUE_SETUP, kind=sqlite3.IntegrityError)


def test_unique_violation(conn):
    _violate(conn, "insert into u values (2, 'a')")


def test_primary_key_violation(conn):
    _violate(conn, "insert into u values (1, 'b')")


def test_not_null_violation(conn):
    _violate(conn, "insert into u values (3, null)")


@_needs_errorcode
@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("insert into u values (2, 'a')", "SQLITE_CONSTRAINT_UNIQUE"),
        ("insert into u values (1, 'b')", "SQLITE_CONSTRAINT_PRIMARYKEY"),
        ("insert into u values (3, null)", "SQLITE_CONSTRAINT_NOTNULL"),
    ],
)
def test_constraint_error_code_and_name(conn, sql, name):
    error = _violate(conn, sql)
    assert error.sqlite_errorname == name
    assert error.sqlite_errorcode == getattr(sqlite3, name)


@_needs_errorcode
def test_operational_error_code(conn):
    error = _assert_same_error(conn, "selec 1", kind=sqlite3.OperationalError)
    assert error.sqlite_errorcode == sqlite3.SQLITE_ERROR
    assert error.sqlite_errorname == "SQLITE_ERROR"


def test_integrity_error_in_executemany(conn, observer):
    conn.execute("create table t(x unique)")
    conn.commit()
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: t.x"):
        conn.executemany("insert into t values (?)", [(1,), (2,), (1,)])
    assert conn.in_transaction
    assert conn.execute("select count(*) from t").fetchone() == (2,)
    conn.rollback()
    assert observer.execute("select count(*) from t").fetchone() == (0,)


@pytest.mark.parametrize(
    "value",
    [object(), decimal.Decimal("1.5"), [1, 2], {"a": 1}, threading.Lock()],
    ids=["object", "decimal", "list", "dict", "lock"],
)
def test_unsupported_parameter_type(conn, value):
    _assert_same_error(conn, "select ?", (value,), kind=sqlite3.ProgrammingError)


def test_unsupported_parameter_type_named(conn):
    _assert_same_error(conn, "select :v", {"v": object()}, kind=sqlite3.ProgrammingError)


def test_parameters_must_be_sequence_or_mapping(conn):
    _assert_same_error(conn, "select ?", 5, kind=sqlite3.ProgrammingError)


def test_udf_error_keeps_connection_usable(conn):
    conn.create_function("fail", 0, lambda: 1 / 0)
    _ = pytest.raises(sqlite3.OperationalError, conn.execute, "select fail()")
    assert conn.execute("select 2").fetchone() == (2,)


def test_error_inside_transaction_keeps_transaction(conn):
    conn.execute("create table t(x)")
    conn.execute("insert into t values (1)")
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("insert into missing values (1)")
    assert conn.in_transaction
    conn.commit()
    assert conn.execute("select x from t").fetchall() == [(1,)]


def _in_other_thread(call):
    """Run ``call()`` in another thread; return ("ok", value) or ("err", exception)."""
    out: list = []

    def body() -> None:
        try:
            out.append(("ok", call()))
        except Exception as exc:  # noqa: BLE001 - compared by the test
            out.append(("err", exc))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(30)
    return out[0]


def test_same_thread_rules_for_close_isolation_and_total_changes(connect):
    conn = connect(check_same_thread=True)
    cur = conn.execute("select 1")
    assert _in_other_thread(lambda: conn.total_changes) == ("ok", 0)
    for call in (conn.close, cur.close):
        kind, exc = _in_other_thread(call)
        assert kind == "err" and isinstance(exc, sqlite3.ProgrammingError)
        assert "same thread" in str(exc)
    kind, exc = _in_other_thread(lambda: setattr(conn, "isolation_level", None))
    if sys.version_info >= (3, 11):  # sqlite3 checks this setter from 3.11 on
        assert kind == "err" and isinstance(exc, sqlite3.ProgrammingError)
    else:
        assert (kind, exc) == ("ok", None) and conn.isolation_level is None
    assert conn.execute("select 2").fetchone() == (2,)  # nothing was closed


def test_closing_a_cursor_of_a_closed_connection_raises(connect):
    conn = connect()
    cur = conn.execute("select 1")
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        cur.close()
    if sys.version_info >= (3, 11):
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            conn.isolation_level = None
    conn.close()  # closing again is allowed


@pytest.fixture
def locker(db_path):
    """Another process holding ``BEGIN EXCLUSIVE`` on a rollback-journal file (a row
    inserted), until ``release()`` commits it."""
    with closing(sqlite3.connect(db_path)) as setup:
        setup.execute("create table t(x)")
        setup.commit()
    lock = LockHolder(db_path, "begin exclusive", "insert into t values (1)", end="commit")
    yield lock
    lock.release()


def test_connect_to_a_file_another_process_has_locked(connect, locker):
    """sqlite3.connect does not read the file, so another process's exclusive lock only
    shows at the first statement that does, after ``timeout``; connect() itself succeeds."""
    conn = connect(timeout=0.2)
    assert conn.execute("select 1").fetchone() == (1,)  # reads no file
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        conn.execute("select count(*) from t").fetchone()
    locker.release()
    assert conn.execute("select count(*) from t").fetchone() == (1,)
    conn.execute("insert into t values (2)")
    conn.commit()
    assert conn.execute("select count(*) from t").fetchone() == (2,)


def test_a_connection_made_while_locked_takes_the_file_up_afterwards(mp_connect, locker,
                                                                     db_path):
    """Once the lock is gone, the connection's next statement does what connect() would
    have: the switch to WAL, the writer gate, group commit."""
    conn = mp_connect(timeout=0.2)
    assert conn.pool_status()["database"] == ""  # sqlite3 alone, for now
    locker.release()
    assert conn.execute("select count(*) from t").fetchone() == (1,)
    assert conn.pool_status()["database"] == str(db_path)
    assert sqlite3.Cursor(conn).execute("pragma journal_mode").fetchone() == ("wal",)
    assert sqlite3.Cursor(conn).execute("pragma synchronous").fetchone() == (1,)  # NORMAL
    assert conn.execute("pragma synchronous").fetchone() == (2,)  # FULL, by group commit


def test_a_connection_made_while_locked_runs_nothing_a_trace_would_see(connect, locker):
    conn = connect(timeout=0.2)
    traced: list[str] = []
    conn.set_trace_callback(traced.append)
    locker.release()
    assert conn.execute("select count(*) from t").fetchone() == (1,)
    assert traced == ["select count(*) from t"]


def test_connect_to_a_file_that_is_no_database(connect, db_path):
    db_path.write_bytes(b"not a database, " * 256)
    conn = connect()
    assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(sqlite3.DatabaseError, match="file is not a database"):
        conn.execute("select * from sqlite_master")
    assert conn.execute("select 2").fetchone() == (2,)


@pytest.mark.parametrize("first", ["executemany", "executescript"])
def test_any_statement_takes_a_file_locked_at_connect_up(mp_connect, locker, db_path, first):
    conn = mp_connect(timeout=0.2)
    locker.release()
    if first == "executemany":
        conn.executemany("insert into t values (?)", [(2,), (3,)])
        conn.commit()
    else:
        conn.executescript("insert into t values (2); insert into t values (3);")
    assert conn.pool_status()["database"] == str(db_path)
    assert sqlite3.Cursor(conn).execute("pragma journal_mode").fetchone() == ("wal",)
    assert conn.execute("select count(*) from t").fetchone() == (3,)

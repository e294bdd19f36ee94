"""The writer gate: per database file, first come first served, taken before a write
transaction begins (DML, DDL, explicit BEGIN or SAVEPOINT) and released when it ends.

Which statements take it is observed through ``pool_status()["writer_grants"]`` (one more
per grant) and ``writer_busy``; a connection with a short timeout shows who waits."""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from contextlib import closing

import pytest

from tests.core._procs import wait_until


@pytest.fixture
def conn(mp_connect):
    c = mp_connect()
    c.execute("create table t(x)")
    c.execute("insert into t values (1)")
    c.commit()
    return c


def _grants(conn) -> int:
    return conn.pool_status()["writer_grants"]


_GATED = [
    "insert into t values (2)",
    "/* c */ insert into t values (2)",
    "-- c\nupdate t set x = 2",
    "replace into t values (2)",
    "delete from t where x = 99",
    "with n as (select 2) insert into t select * from n",
    "insert into t values (2) returning x",
    "create table u(x)",
    "create index t_x on t(x)",
    "drop table if exists nosuch",
    "create view v as select 1",
    "pragma user_version = 3",
    "pragma journal_mode = wal",
    "pragma wal_checkpoint",
    "vacuum",
    "analyze",
    "reindex",
    "begin immediate",
    "begin exclusive",
]

_NOT_GATED = [
    "begin",  # deferred, as in sqlite3: the gate comes with the first write
    "begin deferred transaction",
    "savepoint a",
    "select 1",
    "  -- comment\n SELECT * from t",
    "/* c */ values (1)",
    "with n as (select 1) select * from n",
    "with n as (select 'insert into t values (1)') select * from n",
    'with n as (select 1 as "delete") select * from n',
    "explain select * from t",
    "explain insert into t values (1)",
    "pragma table_info(t)",
    "pragma journal_mode",
    "pragma user_version",
    "pragma foreign_keys = on",
    "PRAGMA main.cache_size=-4000",
    "pragma synchronous",
    "pragma synchronous = full",
    "attach database ':memory:' as m",
    "",
    "-- only a comment",
]


@pytest.mark.parametrize("sql", _GATED)
def test_statements_that_may_write_take_the_gate(conn, sql):
    before = _grants(conn)
    conn.execute(sql).fetchall()
    assert _grants(conn) == before + 1
    assert conn.pool_status()["writer_busy"] is conn.in_transaction
    conn.rollback()
    assert conn.pool_status()["writer_busy"] is False


@pytest.mark.parametrize("sql", _NOT_GATED)
def test_statements_that_cannot_write_do_not(conn, sql):
    before = _grants(conn)
    conn.execute(sql).fetchall()
    assert _grants(conn) == before
    assert not conn.pool_status()["writer_busy"]
    conn.rollback()


def test_commit_and_rollback_without_a_transaction_take_nothing(conn):
    before = _grants(conn)
    for _ in range(5):
        conn.commit()
        conn.rollback()
    assert _grants(conn) == before


def test_the_gate_is_held_for_the_whole_transaction(conn, mp_connect):
    other = mp_connect(timeout=0.2)
    conn.execute("insert into t values (2)")
    conn.execute("insert into t values (3)")
    assert conn.pool_status()["writer_busy"]
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        other.execute("insert into t values (4)")
    conn.commit()
    assert not conn.pool_status()["writer_busy"]
    other.execute("insert into t values (4)")
    other.commit()


def test_a_gate_timeout_keeps_the_connections_own_busy_timeout(conn, mp_connect):
    other = mp_connect(timeout=0.2)
    other.execute("pragma busy_timeout=1234")  # the application's own, after connect
    conn.execute("insert into t values (2)")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        other.execute("insert into t values (4)")  # the gate timed out; SQLite said busy
    assert other.execute("pragma busy_timeout").fetchone() == (1234,)
    conn.commit()


def test_autocommit_statements_release_the_gate_after_each(mp_connect):
    conn = mp_connect(isolation_level=None)
    other = mp_connect(timeout=0.2)
    conn.execute("create table t(x)")
    for i in range(3):
        conn.execute("insert into t values (?)", (i,))
        assert not conn.pool_status()["writer_busy"]
        other.execute("insert into t values (?)", (-i,))
        other.commit()
    conn.execute("begin")
    assert not conn.pool_status()["writer_busy"]  # deferred: nothing written yet
    conn.execute("insert into t values (9)")
    assert conn.pool_status()["writer_busy"]
    conn.execute("commit")
    assert not conn.pool_status()["writer_busy"]


@pytest.mark.parametrize("isolation_level", ["", None])
def test_a_failed_write_keeps_or_ends_the_transaction_as_sqlite3(mp_connect, isolation_level):
    conn = mp_connect(isolation_level=isolation_level)
    conn.execute("create table u(x unique)")
    conn.execute("insert into u values (1)")
    conn.commit()
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("insert into u values (1)")
    # sqlite3 keeps the implicit transaction of a failed DML open; autocommit has none
    assert conn.in_transaction is (isolation_level is not None)
    assert conn.pool_status()["writer_busy"] is conn.in_transaction
    conn.rollback()
    assert not conn.pool_status()["writer_busy"]


def test_executescript_takes_the_gate_and_leaves_it_as_the_script_does(conn, mp_connect):
    other = mp_connect(timeout=0.2)
    conn.executescript("insert into t values (5); insert into t values (6);")
    assert not conn.pool_status()["writer_busy"]
    other.execute("insert into t values (7)")
    other.commit()
    conn.executescript("begin; insert into t values (8);")  # leaves its transaction open
    assert conn.in_transaction and conn.pool_status()["writer_busy"]
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        other.execute("insert into t values (9)")
    conn.commit()
    other.execute("insert into t values (9)")
    other.commit()
    assert [x for (x,) in conn.execute("select x from t order by x")] == [1, 5, 6, 7, 8, 9]


@pytest.mark.parametrize("how", ["close", "isolation_level=None", "garbage"])
def test_ending_a_connection_or_its_transaction_otherwise_releases_the_gate(
        mpsqlite, db_path, conn, mp_connect, how):
    other = mp_connect(timeout=0.2)

    def holder():
        c = mpsqlite.connect(str(db_path), workers=2)
        c.execute("insert into t values (2)")
        assert c.pool_status()["writer_busy"]
        return c

    c = holder()
    if how == "close":
        c.close()
        expected = [(1,)]
    elif how == "isolation_level=None":
        c.isolation_level = None  # sqlite3 commits the open transaction
        expected = [(1,), (2,)]
    else:  # dropped without close(): sqlite3 rolls back as it frees the connection
        del c
        gc.collect()
        expected = [(1,)]
    assert not conn.pool_status()["writer_busy"]
    other.execute("insert into t values (3)")
    other.commit()
    assert conn.execute("select x from t order by x").fetchall() == [*expected, (3,)]
    if how == "isolation_level=None":
        c.close()


def test_backup_into_an_mpsqlite_connection_queues_in_its_gate(mp_connect, tmp_path):
    source = mp_connect(":memory:")
    source.execute("create table s(v)")
    source.execute("insert into s values ('copied')")
    source.commit()
    target = mp_connect(tmp_path / "target.db", timeout=0.2)
    holder = mp_connect(tmp_path / "target.db")
    holder.execute("create table h(x)")
    holder.execute("insert into h values (1)")  # holds the target's gate
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        source.backup(target)
    holder.commit()
    source.backup(target)
    assert target.execute("select v from s").fetchall() == [("copied",)]
    assert not target.pool_status()["writer_busy"]


def test_deserialize_leaves_the_files_gate_behind(conn, mp_connect):
    if not hasattr(sqlite3.Connection, "deserialize"):
        pytest.skip("Connection.deserialize exists from Python 3.11")
    image = sqlite3.connect(":memory:")
    image.execute("create table d(v)")
    image.execute("insert into d values ('image')")
    image.commit()
    data = image.serialize()
    image.close()
    other = mp_connect(timeout=0.2)
    other.deserialize(data)
    assert other.pool_status() == {"database": "", "size": 0, "workers": []}
    conn.execute("insert into t values (2)")  # holds the file's gate
    other.execute("insert into d values ('mine')")  # not the file any more: no wait
    other.commit()
    assert other.execute("select v from d").fetchall() == [("image",), ("mine",)]
    conn.rollback()


def test_a_waiter_that_times_out_leaves_the_queue_in_order(conn, mp_connect, mpsqlite,
                                                             db_path):
    conn.execute("insert into t values (2)")  # the holder
    impatient = mp_connect(timeout=0.2, check_same_thread=False)
    order: list[str] = []
    errors: list[BaseException] = []

    def patient_write() -> None:
        try:
            with mpsqlite.connect(str(db_path), workers=2, timeout=60) as patient:
                patient.execute("insert into t values (3)")
                order.append("patient")
            patient.close()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        impatient.execute("insert into t values (9)")
    thread = threading.Thread(target=patient_write, daemon=True)
    thread.start()
    wait_until(lambda: conn.pool_status()["writer_waiting"] == 1, what="the patient writer")
    conn.commit()
    thread.join(30)
    assert errors == [] and order == ["patient"]
    assert conn.pool_status()["writer_wait_seconds"] > 0


def test_idle_writer_is_revoked_when_another_writer_waits(mp_connect, db_path):
    """A transaction idle in the gate longer than max_write_seconds while another writer
    waits is rolled back, so that one forgotten transaction cannot stop every writer."""
    a = mp_connect(max_write_seconds=0.3, check_same_thread=False)
    a.execute("create table r(x)")
    a.commit()
    a.execute("insert into r values (1)")  # opens a transaction and sits on it
    b = mp_connect(timeout=5)  # far past max_write_seconds
    b.execute("insert into r values (2)")  # waits past a's 0.3 s, then a is revoked
    b.commit()
    with pytest.raises(sqlite3.OperationalError, match="max_write_seconds"):
        a.commit()
    a.execute("insert into r values (3)")  # usable again
    a.commit()
    assert sorted(b.execute("select x from r")) == [(2,), (3,)]


@pytest.mark.parametrize("end", ["rollback()", "ROLLBACK"])
def test_a_revoked_transaction_is_acknowledged_by_rollback(mp_connect, end):
    a = mp_connect(max_write_seconds=0.2, isolation_level=None, check_same_thread=False)
    a.execute("create table r(x)")
    a.execute("begin")
    a.execute("insert into r values (1)")
    b = mp_connect(timeout=5)  # far past max_write_seconds
    b.execute("insert into r values (2)")
    b.commit()
    with pytest.raises(sqlite3.OperationalError, match="max_write_seconds"):
        a.execute("insert into r values (3)")
    if end == "ROLLBACK":
        a.execute("ROLLBACK")
    else:
        a.rollback()
    a.execute("insert into r values (4)")  # usable again, in autocommit mode
    assert sorted(b.execute("select x from r")) == [(2,), (4,)]


def test_a_busy_writer_is_not_revoked(mp_connect, tmp_path):
    """Only an idle transaction is taken back: one whose statement runs keeps the gate."""
    a = mp_connect(max_write_seconds=0.2, check_same_thread=False)
    a.execute("create table r(x)")
    a.commit()
    release = threading.Event()
    a.create_function("hold", 0, lambda: release.wait(30) and 1)
    b = mp_connect(timeout=30, check_same_thread=False)
    results: list = []

    def a_writes() -> None:
        results.append(a.execute("insert into r select hold()").rowcount)

    thread = threading.Thread(target=a_writes, daemon=True)
    thread.start()
    wait_until(lambda: a.pool_status()["writer_busy"], what="a to hold the gate")
    b_thread = threading.Thread(target=lambda: b.execute("insert into r values (2)"),
                                daemon=True)
    b_thread.start()
    wait_until(lambda: a.pool_status()["writer_waiting"] == 1, what="b to wait")
    time.sleep(0.5)  # longer than max_write_seconds: a runs a statement all along
    release.set()
    thread.join(30)
    assert results == [1]
    a.commit()  # not revoked
    b_thread.join(30)
    b.commit()
    assert sorted(b.execute("select x from r")) == [(1,), (2,)]


@pytest.mark.parametrize("begin", ["begin", "begin deferred", "savepoint s"])
def test_a_deferred_transaction_takes_the_gate_at_its_first_write(mp_connect, begin):
    conn = mp_connect(isolation_level=None)
    conn.execute("create table t(x)")
    other = mp_connect(timeout=0.2)
    conn.execute(begin)
    assert conn.in_transaction
    assert conn.execute("select count(*) from t").fetchone() == (0,)
    assert not conn.pool_status()["writer_busy"]
    other.execute("insert into t values (1)")  # others write meanwhile, as with sqlite3
    other.commit()
    conn.execute("rollback")
    conn.execute(begin)
    conn.execute("insert into t values (2)")
    assert conn.pool_status()["writer_busy"]
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        other.execute("insert into t values (3)")
    conn.execute("release s" if begin.startswith("savepoint") else "commit")
    assert not conn.pool_status()["writer_busy"]
    assert conn.execute("select x from t order by x").fetchall() == [(1,), (2,)]


def test_a_stale_deferred_transaction_fails_to_write_as_in_sqlite3(tmp_path):
    """A deferred transaction that read before another connection committed cannot write
    (SQLite's outdated snapshot): the same error as sqlite3's, and the others write on."""
    import mpsqlite

    outcomes = []
    for module in (sqlite3, mpsqlite):
        path = str(tmp_path / f"{module.__name__}.db")
        with closing(sqlite3.connect(path)) as setup:
            setup.execute("pragma journal_mode = wal")
            setup.execute("create table t(x)")
            setup.commit()
        stale = module.connect(path, isolation_level=None, timeout=0.2)
        other = module.connect(path, isolation_level=None, timeout=0.2)
        try:
            stale.execute("begin")
            stale.execute("select count(*) from t").fetchall()
            other.execute("insert into t values (1)")
            try:
                stale.execute("insert into t values (2)")
                error = None
            except sqlite3.OperationalError as exc:
                error = str(exc)
            in_transaction = stale.in_transaction
            try:  # while the stale transaction is still open
                other.execute("insert into t values (3)")
                other_wrote = True
            except sqlite3.OperationalError:
                other_wrote = False
            stale.execute("rollback")
            stale.execute("insert into t values (4)")
            rows = other.execute("select x from t order by x").fetchall()
            outcomes.append((error, in_transaction, other_wrote, rows))
        finally:
            stale.close()
            other.close()
    assert outcomes[0][0] == "database is locked"
    assert outcomes[1] == outcomes[0]


_TEMP_ONLY = [
    "create temp table tt(x)",
    "insert into tt values (1)",
    "insert into temp.tt values (2)",
    "/* c */ update tt set x = x + 1",
    'delete from "tt" where x = 3',
    "create index temp.tt_x on tt(x)",
    "create temporary view tv as select * from tt",
    "create table temp.t(y)",  # shadows main.t in unqualified names
    "insert into t values (10)",
    "drop table temp.t",
]


def test_writes_to_temp_tables_run_beside_another_writer(conn, mp_connect):
    holder = mp_connect()
    holder.execute("insert into t values (2)")  # holds the gate and SQLite's write lock
    before = _grants(conn)
    for sql in _TEMP_ONLY:
        conn.execute(sql)
    conn.commit()
    assert _grants(conn) == before
    assert conn.execute("select x from tv").fetchall() == [(2,)]
    assert conn.execute("select x from t").fetchall() == [(1,)]  # main.t: 10 went to temp.t
    holder.commit()


def test_a_temp_only_transaction_takes_the_gate_at_its_first_file_write(conn):
    conn.execute("create temp table tt(x)")
    conn.execute("insert into tt values (1)")
    assert conn.in_transaction and not conn.pool_status()["writer_busy"]
    before = _grants(conn)
    conn.execute("insert into t values (7)")
    assert _grants(conn) == before + 1 and conn.pool_status()["writer_busy"]
    conn.commit()
    assert not conn.pool_status()["writer_busy"]
    assert conn.execute("select x from t order by x").fetchall() == [(1,), (7,)]


def test_a_temp_trigger_keeps_temp_writes_gated(conn):
    conn.execute("create temp table tt(x)")
    conn.execute("create temp trigger tr after insert on tt begin "
                 "insert into t values (new.x); end")
    before = _grants(conn)
    conn.execute("insert into tt values (5)")  # the trigger writes the file
    assert _grants(conn) == before + 1
    conn.commit()
    assert conn.execute("select count(*) from main.t where x = 5").fetchone() == (1,)

"""Transaction control: explicit BEGIN, the writer gate, SAVEPOINT, DDL, isolation levels."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, event, exc, inspect, select, text
from sqlalchemy.orm import Session

metadata = MetaData()
item = Table("item", metadata, Column("id", Integer, primary_key=True), Column("n", Integer))


def _in_gate(status: dict) -> bool:
    """Whether some connection to the database holds mpsqlite's writer gate."""
    return status["writer_busy"]


def _wait_for(predicate, what: str) -> None:
    """Poll ``predicate`` (no timing is asserted: the deadline only stops a hang)."""
    deadline = time.monotonic() + 30
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def observer(db_path: Path):
    """A stdlib sqlite3 connection to the same file: sees committed data only."""
    conn = sqlite3.connect(str(db_path), timeout=0, isolation_level=None)
    yield conn
    conn.close()


@pytest.fixture
def items(engine):
    metadata.create_all(engine)
    return engine


def test_session_holds_the_writer_gate_from_first_write_to_commit(items, pool_of) -> None:
    """begin=write (default): reads before the first write run outside the transaction."""
    with Session(items) as session:
        session.execute(select(item)).all()
        assert not _in_gate(pool_of())
        grants = pool_of()["writer_grants"]
        session.execute(item.insert().values(n=1))
        assert _in_gate(pool_of())
        assert session.execute(select(item.c.n)).scalars().all() == [1]  # sees its own write
        assert _in_gate(pool_of())
        session.commit()
        status = pool_of()
        assert not _in_gate(status)
        assert status["writer_grants"] == grants + 1
        assert status["commits"] >= 1 and status["fsyncs"] >= 1


def test_writers_queue_in_the_gate_first_come_first_served(make_engine, pool_of) -> None:
    """A second session's write waits until the first commits, a third after the second;
    their reads before their first write see committed data only."""
    items = make_engine("timeout=60")
    metadata.create_all(items)
    seen: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with Session(items) as session:
                seen[n] = session.execute(select(item.c.n)).scalars().all()
                session.execute(item.insert().values(n=n))  # waits in the gate
                session.commit()
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (2, 3)]
    with Session(items) as first:
        first.execute(item.insert().values(n=1))
        assert _in_gate(pool_of())
        threads[0].start()
        _wait_for(lambda: pool_of()["writer_waiting"] == 1, "the second writer to queue")
        threads[1].start()
        _wait_for(lambda: pool_of()["writer_waiting"] == 2, "the third writer to queue")
        assert threads[0].is_alive() and threads[1].is_alive()  # both still waiting
        assert seen == {2: [], 3: []}  # the first session's write is not committed
        first.commit()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and errors == []
    with items.connect() as conn:
        assert conn.execute(select(item.c.n).order_by(item.c.id)).scalars().all() == [1, 2, 3]
    status = pool_of()
    assert (status["writer_waiting"], status["writer_busy"]) == (0, False)
    assert status["writer_wait_seconds"] > 0


def test_read_only_sessions_run_side_by_side(items) -> None:
    """begin=write: sessions that only read take no writer slot, so they overlap."""
    with Session(items) as first, Session(items) as second:
        first.execute(item.insert().values(n=1))  # holds the writer slot until commit
        assert second.execute(select(item.c.n)).scalars().all() == []
        first.commit()
        assert second.execute(select(item.c.n)).scalars().all() == [1]


def test_deferred_session_reads_one_snapshot_and_takes_the_gate_at_its_first_write(
    make_engine, pool_of
):
    """begin=deferred: BEGIN before the first statement, so the session's reads share one
    snapshot; as in sqlite3, the writer gate comes with the first write."""
    items = make_engine("begin=deferred")
    metadata.create_all(items)
    with Session(items) as session, items.connect() as other:
        grants = pool_of()["writer_grants"]
        assert session.execute(select(item)).all() == []
        assert not _in_gate(pool_of())  # a reading transaction leaves writers alone
        other.execute(item.insert().values(n=7))
        other.commit()
        assert session.execute(select(item)).all() == []  # still its own snapshot
        session.rollback()
        session.execute(item.insert().values(n=1))
        assert _in_gate(pool_of())
        session.commit()
        status = pool_of()
        assert not _in_gate(status)
        assert status["writer_grants"] == grants + 2  # other's insert, then the session's


def test_immediate_session_holds_the_writer_gate_from_first_statement_to_commit(
    make_engine, pool_of
):
    items = make_engine("begin=immediate")
    metadata.create_all(items)
    with Session(items) as session:
        grants = pool_of()["writer_grants"]
        session.execute(select(item)).all()
        assert _in_gate(pool_of())
        session.execute(item.insert().values(n=1))
        session.commit()
        status = pool_of()
        assert not _in_gate(status)
        assert status["writer_grants"] == grants + 1  # one transaction, one grant


def _read_then_write_while_another_session_writes(items, pool_of, nested: bool) -> None:
    """Session A reads in its transaction, session B (another thread) writes meanwhile,
    then A writes. Whoever goes first, neither may fail with 'database is locked': A must
    not be left to upgrade a read snapshot that B's commit made stale."""
    errors: list[BaseException] = []
    b_done = threading.Event()

    def other_writer() -> None:
        try:
            with Session(items) as b:
                b.execute(item.insert().values(n=1))
                b.commit()
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)
        finally:
            b_done.set()

    with Session(items) as a:
        if nested:
            a.begin_nested()  # SAVEPOINT: begin=write sends BEGIN before it
        assert a.execute(select(item.c.n)).scalars().all() == []
        other = threading.Thread(target=other_writer)
        other.start()
        _wait_for(lambda: b_done.is_set() or pool_of()["writer_waiting"] == 1,
                  "the other writer to finish or to queue")
        try:
            a.execute(item.insert().values(n=2))
            a.commit()
        except exc.OperationalError as err:
            errors.append(err)
    other.join(60)
    assert not other.is_alive()
    assert errors == []
    with items.connect() as conn:
        assert sorted(conn.execute(select(item.c.n)).scalars()) == [1, 2]


def test_immediate_read_then_write_never_fails_to_upgrade(make_engine, pool_of) -> None:
    """begin=immediate: BEGIN IMMEDIATE takes the writer gate at once, so the other
    session's write queues behind the whole transaction."""
    items = make_engine("begin=immediate&timeout=60")
    metadata.create_all(items)
    _read_then_write_while_another_session_writes(items, pool_of, nested=False)


def test_savepoint_read_then_write_never_fails_to_upgrade(make_engine, pool_of) -> None:
    """begin=write: a transaction that opens with SAVEPOINT holds the writer gate from
    there (the docs: 'a read-then-write transaction never fails to upgrade its lock')."""
    items = make_engine("timeout=60")
    metadata.create_all(items)
    _read_then_write_while_another_session_writes(items, pool_of, nested=True)


def test_temp_table_lives_for_the_whole_transaction(items) -> None:
    with items.begin() as conn:
        conn.execute(text("create temp table scratch (v)"))
        for v in range(10):
            conn.execute(text("insert into scratch values (:v)"), {"v": v})
            assert conn.execute(text("select count(*) from scratch")).scalar() == v + 1


def test_temp_table_outlives_the_transaction_on_its_connection(make_engine) -> None:
    """Each mpsqlite connection is one SQLite connection: TEMP objects persist on it."""
    items = make_engine(pool_size=1, max_overflow=0)
    with items.begin() as conn:
        conn.execute(text("create temp table scratch (v)"))
        conn.execute(text("insert into scratch values (1)"))
    with items.connect() as conn:  # the same pooled DBAPI connection, a new transaction
        assert conn.execute(text("select v from scratch")).scalars().all() == [1]
        conn.execute(text("insert into scratch values (2)"))
        conn.commit()
        assert conn.execute(text("select count(*) from scratch")).scalar() == 2


def test_uncommitted_writes_stay_private(items, observer) -> None:
    with Session(items) as session:
        session.execute(item.insert().values(n=7))
        assert session.execute(select(item.c.n)).scalars().all() == [7]
        assert observer.execute("select count(*) from item").fetchone() == (0,)
        session.commit()
    assert observer.execute("select n from item").fetchall() == [(7,)]


def test_deferred_reads_before_the_first_write_share_its_snapshot(make_engine, observer):
    """begin=deferred: a write by someone else after the first read is not seen."""
    items = make_engine("begin=deferred")
    metadata.create_all(items)
    with Session(items) as session:
        assert session.execute(select(item)).all() == []
        observer.execute("insert into item (n) values (99)")
        assert session.execute(select(item)).all() == []
        session.rollback()
        assert session.execute(select(item.c.n)).scalars().all() == [99]


def test_write_mode_reads_see_commits_until_the_first_write(items, observer) -> None:
    """begin=write: like stock sqlite://, reads before the first write are not isolated."""
    with Session(items) as session:
        assert session.execute(select(item)).all() == []
        observer.execute("insert into item (n) values (99)")
        assert session.execute(select(item.c.n)).scalars().all() == [99]
        session.execute(item.insert().values(n=1))
        observer_sees = observer.execute("select count(*) from item").fetchone()
        assert observer_sees == (1,)  # our insert is not committed yet
        session.commit()
    assert observer.execute("select count(*) from item").fetchone() == (2,)


def test_rollback_discards_everything(items, observer) -> None:
    with Session(items) as session:
        session.execute(item.insert().values(n=1))
        session.rollback()
    assert observer.execute("select count(*) from item").fetchone() == (0,)


def test_begin_nested_savepoint(items, observer) -> None:
    with Session(items) as session:
        session.execute(item.insert().values(n=1))
        nested = session.begin_nested()
        session.execute(item.insert().values(n=2))
        nested.rollback()
        with session.begin_nested():
            session.execute(item.insert().values(n=3))
        assert session.execute(select(item.c.n).order_by(item.c.n)).scalars().all() == [1, 3]
        assert observer.execute("select count(*) from item").fetchone() == (0,)
        session.commit()
    assert observer.execute("select n from item order by n").fetchall() == [(1,), (3,)]


def test_ddl_is_transactional(engine) -> None:
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(item.insert().values(n=1))
            raise RuntimeError("abort")
    assert not inspect(engine).has_table("item")


def test_autocommit_commits_each_statement_and_pins_nothing(items, observer, pool_of) -> None:
    with items.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(item.insert().values(n=5))
        assert not _in_gate(pool_of())  # the statement's own transaction has ended
        assert observer.execute("select n from item").fetchall() == [(5,)]
        conn.rollback()
    assert observer.execute("select n from item").fetchall() == [(5,)]
    with items.connect() as conn:  # back to the default level on the next checkout
        conn.execute(item.insert().values(n=6))
        conn.rollback()
    assert observer.execute("select count(*) from item").fetchone() == (1,)


def test_engine_wide_autocommit(make_engine, observer) -> None:
    engine = make_engine(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("create table t (v)"))
        conn.execute(text("insert into t values (1)"))
    assert observer.execute("select v from t").fetchall() == [(1,)]


def test_isolation_levels(make_engine) -> None:
    engine = make_engine()
    with engine.connect() as conn:
        assert conn.get_isolation_level() == "SERIALIZABLE"
        assert set(conn.dialect.get_isolation_level_values(None)) >= {
            "SERIALIZABLE",
            "READ UNCOMMITTED",
            "AUTOCOMMIT",
        }
    uncommitted = make_engine(isolation_level="READ UNCOMMITTED")
    with uncommitted.connect() as conn:
        assert conn.get_isolation_level() == "READ UNCOMMITTED"
        assert conn.execute(text("select 1")).scalar() == 1
    with pytest.raises(exc.ArgumentError, match="READ COMMITTED"):
        with make_engine(isolation_level="READ COMMITTED").connect():
            pass


def test_checkin_rollback_costs_no_round_trip(items, pool_of) -> None:
    """The pool's rollback on check-in sends nothing to SQLite when no transaction is open."""
    traced: list[str] = []

    @event.listens_for(items, "connect")
    def trace(dbapi_connection, _record) -> None:
        dbapi_connection.set_trace_callback(traced.append)

    items.dispose()  # new connections, traced from the start
    with items.connect() as conn:
        conn.execute(select(item)).all()
        conn.commit()
    assert any("FROM item" in sql for sql in traced)
    traced.clear()
    grants = pool_of()["writer_grants"]
    for _ in range(20):
        with items.connect():
            pass
    assert traced == []
    assert pool_of()["writer_grants"] == grants
    with items.connect() as conn:  # a transaction that wrote is rolled back for real
        conn.execute(item.insert().values(n=1))
    assert traced[-1] == "ROLLBACK"
    assert not _in_gate(pool_of())


def test_begin_immediate_takes_the_write_lock_up_front(make_engine, observer) -> None:
    engine = make_engine("begin=immediate")
    metadata.create_all(engine)
    with engine.connect() as conn:
        conn.execute(select(item)).all()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            observer.execute("insert into item (n) values (1)")


def test_begin_deferred_read_does_not_lock_out_writers(items, observer) -> None:
    with items.connect() as conn:
        conn.execute(select(item)).all()
        observer.execute("insert into item (n) values (1)")


def test_begin_driver_leaves_reads_outside_the_writer_gate(make_engine, pool_of, observer):
    engine = make_engine("begin=driver")
    metadata.create_all(engine)
    with Session(engine) as session:
        session.execute(select(item)).all()
        assert not _in_gate(pool_of())
        session.execute(item.insert().values(n=1))
        assert _in_gate(pool_of())
        assert observer.execute("select count(*) from item").fetchone() == (0,)
        session.commit()
    assert not _in_gate(pool_of())
    assert observer.execute("select count(*) from item").fetchone() == (1,)


def test_own_begin_statement_replaces_the_dialects(items, observer) -> None:
    with items.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            observer.execute("insert into item (n) values (1)")
        conn.execute(item.insert().values(n=2))
        conn.commit()
    assert observer.execute("select n from item").fetchall() == [(2,)]


@pytest.mark.parametrize("setting", ["pragma foreign_keys = on", "pragma main.foreign_keys=1"])
def test_a_connection_setting_inside_a_transaction_block_takes_effect(make_engine, setting):
    """SQLite ignores PRAGMA foreign_keys inside a transaction: the pending BEGIN must not go
    out before a connection setting (Alembic's batch tests set it so, as stock allows)."""
    engine = make_engine()
    with engine.begin() as conn:
        conn.execute(text("create table p(id integer primary key)"))
        conn.execute(text("create table c(p integer references p(id))"))
    with engine.connect() as conn:
        conn.execute(text(setting))
        assert conn.execute(text("pragma foreign_keys")).scalar() == 1
        with pytest.raises(exc.IntegrityError, match="FOREIGN KEY"):
            conn.execute(text("insert into c values (42)"))
        conn.rollback()


def test_a_begin_of_the_applications_own_replaces_the_pending_one(make_engine):
    """SQLAlchemy's documented pysqlite recipe emits BEGIN in the "begin" event, before the
    dialect's do_begin(); the dialect must not send a second BEGIN before the first write."""
    engine = make_engine()

    @event.listens_for(engine, "begin")
    def do_begin(conn):
        conn.exec_driver_sql("BEGIN")

    with engine.begin() as conn:
        conn.exec_driver_sql("create table r(x)")
        conn.exec_driver_sql("insert into r values (1)")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select x from r").fetchall() == [(1,)]


def test_a_write_transaction_locks_an_attached_database_only_when_it_writes_it(
        make_engine, tmp_path) -> None:
    """begin=write opens with the first write; BEGIN IMMEDIATE there took the write lock of
    every attached database too, so a write to the main file waited for (and failed on) a
    writer of an archive it never touched. Stock ``sqlite://`` writes it at once."""
    archive = tmp_path / "archive.db"
    with sqlite3.connect(str(archive)) as setup:
        setup.execute("pragma journal_mode=wal")
        setup.execute("create table old (x)")
    engine = make_engine("timeout=0.5")
    metadata.create_all(engine)
    event.listen(engine, "connect",
                 lambda dbapi, _rec: dbapi.execute(f"ATTACH '{archive}' AS archive"))
    engine.dispose()  # the next connection attaches it
    holder = sqlite3.connect(str(archive), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer of the archive, mid-transaction
    try:
        with engine.begin() as conn:
            conn.execute(item.insert().values(n=7))
        with engine.connect() as conn:
            assert conn.execute(select(item.c.n)).scalars().all() == [7]
        with pytest.raises(exc.OperationalError, match="locked"):
            with engine.begin() as conn:  # writing the archive does wait for its writer
                conn.exec_driver_sql("insert into archive.old values (1)")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

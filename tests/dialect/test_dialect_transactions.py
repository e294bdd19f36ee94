"""Transaction control: explicit BEGIN, worker pinning, SAVEPOINT, DDL, isolation levels."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, exc, inspect, select, text
from sqlalchemy.orm import Session

metadata = MetaData()
item = Table("item", metadata, Column("id", Integer, primary_key=True), Column("n", Integer))


def _pinned(status: dict) -> list[int]:
    return [w["pid"] for w in status["workers"] if w["state"] == "pinned"]


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


def test_session_is_pinned_from_first_write_to_commit(items, pool_of) -> None:
    """begin=write (default): reads before the first write run outside the transaction."""
    with Session(items) as session:
        session.execute(select(item)).all()
        assert _pinned(pool_of()) == []
        session.execute(item.insert().values(n=1))
        pinned = _pinned(pool_of())
        assert len(pinned) == 1
        session.execute(select(item)).all()
        assert _pinned(pool_of()) == pinned
        session.commit()
        assert _pinned(pool_of()) == []


def test_read_only_sessions_run_side_by_side(items) -> None:
    """begin=write: sessions that only read take no writer slot, so they overlap."""
    with Session(items) as first, Session(items) as second:
        first.execute(item.insert().values(n=1))  # holds the writer slot until commit
        assert second.execute(select(item.c.n)).scalars().all() == []
        first.commit()
        assert second.execute(select(item.c.n)).scalars().all() == [1]


def test_deferred_session_is_pinned_from_first_statement_to_commit(make_engine, pool_of):
    items = make_engine("begin=deferred")
    metadata.create_all(items)
    with Session(items) as session:
        assert _pinned(pool_of()) == []
        session.execute(select(item)).all()
        pinned = _pinned(pool_of())
        assert len(pinned) == 1
        session.execute(item.insert().values(n=1))
        session.execute(select(item)).all()
        assert _pinned(pool_of()) == pinned
        session.commit()
        assert _pinned(pool_of()) == []


def test_temp_table_lives_for_the_whole_transaction(items) -> None:
    with items.begin() as conn:
        conn.execute(text("create temp table scratch (v)"))
        for v in range(10):
            conn.execute(text("insert into scratch values (:v)"), {"v": v})
            assert conn.execute(text("select count(*) from scratch")).scalar() == v + 1


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
        assert _pinned(pool_of()) == []
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
    with items.connect() as conn:
        conn.execute(select(item)).all()
        conn.commit()
        after_commit = pool_of()["statements"]
    assert pool_of()["statements"] == after_commit
    for _ in range(20):
        with items.connect():
            pass
    assert pool_of()["statements"] == after_commit


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


def test_begin_driver_leaves_reads_unpinned(make_engine, pool_of, observer) -> None:
    engine = make_engine("begin=driver")
    metadata.create_all(engine)
    with Session(engine) as session:
        session.execute(select(item)).all()
        assert _pinned(pool_of()) == []
        session.execute(item.insert().values(n=1))
        assert len(_pinned(pool_of())) == 1
        assert observer.execute("select count(*) from item").fetchone() == (0,)
        session.commit()
    assert observer.execute("select count(*) from item").fetchone() == (1,)


def test_own_begin_statement_replaces_the_dialects(items, observer) -> None:
    with items.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            observer.execute("insert into item (n) values (1)")
        conn.execute(item.insert().values(n=2))
        conn.commit()
    assert observer.execute("select n from item").fetchall() == [(2,)]

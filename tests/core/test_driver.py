"""mpsqlite wraps DB-API modules other than sqlite3 (``driver=``)."""

from __future__ import annotations

import sqlite3

import pytest

import mpsqlite
from tests.core import _minidriver

DRIVER = "tests.core._minidriver"


@pytest.fixture
def con(tmp_path):
    c = mpsqlite.connect(str(tmp_path / "m.db"), workers=2, driver=DRIVER)
    yield c
    c.close()


def test_writes_commit_and_roll_back_through_a_foreign_driver(con, tmp_path):
    con.execute("create table t(id integer primary key, v text)")
    con.commit()
    con.execute("insert into t(v) values (?)", ("kept",))
    assert con.in_transaction
    con.commit()
    con.execute("insert into t(v) values (?)", ("dropped",))
    con.rollback()
    assert not con.in_transaction
    plain = sqlite3.connect(tmp_path / "m.db")
    assert plain.execute("select v from t").fetchall() == [("kept",)]
    assert con.execute("select v from t").fetchall() == [("kept",)]


def test_the_drivers_own_exception_classes_arrive(con):
    con.execute("create table u(x unique)")
    con.execute("insert into u values (1)")
    con.commit()
    with pytest.raises(_minidriver.IntegrityError, match="UNIQUE"):
        con.execute("insert into u values (1)")
    con.rollback()
    assert con.execute("select count(*) from u").fetchone() == (1,)


def test_reads_run_on_several_workers(con):
    con.execute("create table t(x)")
    con.executemany("insert into t values (?)", [(i,) for i in range(1000)])
    con.commit()
    # Each cursor keeps its worker while rows remain there: two open results
    # can only be held by two different workers.
    first = con.execute("select x from t order by x")
    second = con.execute("select x from t order by x desc")
    assert first.fetchone() == (0,) and second.fetchone() == (999,)
    states = [w["state"] for w in con.pool_status()["workers"]]
    assert states == ["pinned", "pinned"]
    assert len(first.fetchall()) == 999 and len(second.fetchall()) == 999

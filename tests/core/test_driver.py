"""mpsqlite over DB-API modules other than sqlite3 (``driver=``): the writer gate, the
driver's own exceptions, and heavy reads offloaded to workers running the same driver.

Each test that any driver can pass runs on three: our minimal one, and two real drivers
from PyPI that are not sqlite3 (their own exception classes, their own SQLite build):
pysqlite3 (``pysqlite3-binary``) and sqlean.py."""

from __future__ import annotations

import importlib
import logging
import os
import platform
import sqlite3
import sys
import threading
from contextlib import closing
from types import ModuleType

import pytest

import mpsqlite
from tests.core import _minidriver
from tests.core._procs import wait_until

DRIVER = "tests.core._minidriver"
#: Real drivers, installed by the test extra where they have wheels (Linux on x86-64).
REAL_DRIVERS = ("pysqlite3.dbapi2", "sqlean")
_WHEELS = sys.platform == "linux" and platform.machine() == "x86_64"
ROWS = 1500


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        if _WHEELS:
            raise  # the test extra installs it here: the environment is broken
        pytest.skip(f"{name} has no wheel for this platform")


@pytest.fixture(params=(DRIVER, *REAL_DRIVERS))
def driver(request) -> ModuleType:
    """The DB-API module under test, by the name ``driver=`` takes."""
    return _module(request.param)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "m.db")


@pytest.fixture
def con(driver, path, tmp_path, monkeypatch):
    # Workers leave the caller's current directory off their import path, and this test
    # driver is importable only from the checkout, where pytest runs: work elsewhere
    # (test_a_driver_importable_from_the_current_directory_reaches_workers is the case).
    monkeypatch.chdir(tmp_path)
    c = mpsqlite.connect(path, workers=2, driver=driver.__name__)
    yield c
    c.close()


def _fill(con):
    con.execute("create table t(x)")
    con.executemany("insert into t values (?)", [(i,) for i in range(ROWS)])
    con.commit()


def test_connect_returns_a_driver_connection(con, driver):
    assert isinstance(con, mpsqlite.DriverConnection)
    assert con.IntegrityError is driver.IntegrityError
    assert driver.IntegrityError is not sqlite3.IntegrityError


def test_writes_commit_and_roll_back_through_a_foreign_driver(con, path):
    con.execute("create table t(id integer primary key, v text)")
    con.commit()
    con.execute("insert into t(v) values (?)", ("kept",))
    assert con.in_transaction
    con.commit()
    assert not con.in_transaction
    con.execute("insert into t(v) values (?)", ("dropped",))
    con.rollback()
    assert not con.in_transaction
    with closing(sqlite3.connect(path)) as plain:
        assert plain.execute("select v from t").fetchall() == [("kept",)]
    assert con.execute("select v from t").fetchall() == [("kept",)]


def test_the_drivers_own_exception_classes_arrive(con, driver):
    con.execute("create table u(x unique)")
    con.execute("insert into u values (1)")
    con.commit()
    with pytest.raises(driver.IntegrityError, match="UNIQUE"):
        con.execute("insert into u values (1)")
    con.rollback()
    assert con.execute("select count(*) from u").fetchone() == (1,)
    with pytest.raises(driver.OperationalError, match="no such table"):
        con.execute("select * from nosuch")


def test_second_writer_waits_for_the_first_commit(con, driver, path):
    _fill(con)
    con.execute("insert into t values (-1)")  # holds the writer gate
    errors: list[BaseException] = []

    def _write():  # the driver's connections belong to one thread (threadsafety 1)
        try:
            with closing(mpsqlite.connect(path, workers=2, driver=driver.__name__,
                                          timeout=60)) as second:
                second.execute("insert into t values (-2)")
                second.commit()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    thread = threading.Thread(target=_write, daemon=True)
    thread.start()
    wait_until(lambda: con.pool_status()["writer_waiting"] == 1, what="the second writer")
    con.commit()
    thread.join(60)
    assert not thread.is_alive() and errors == []
    with closing(sqlite3.connect(path)) as plain:
        assert plain.execute("select count(*) from t where x < 0").fetchone() == (2,)


def test_heavy_reads_run_on_workers(con, driver):
    _fill(con)
    # sqlite_version() tells the driver's SQLite build: the workers run the same driver
    sql = "select x, sqlite_version() from t order by x"
    version = getattr(driver, "sqlite_version", sqlite3.sqlite_version)
    expected = [(i, version) for i in range(ROWS)]
    assert con.execute(sql).fetchall() == expected  # in the caller: judged heavy
    assert con.pool_status()["offloaded_statements"] == 0
    assert con.execute(sql).fetchall() == expected  # on a worker
    status = con.pool_status()
    assert status["offloaded_statements"] == 1
    assert len(status["workers"]) == 1 and status["workers"][0]["pid"] != os.getpid()


def test_open_results_are_held_by_several_workers(con):
    _fill(con)
    con.execute("select x from t order by x").fetchall()
    con.execute("select x from t order by x desc").fetchall()
    # Each cursor keeps its worker while rows remain there: two open results
    # are held by two different workers.
    first = con.execute("select x from t order by x")
    second = con.execute("select x from t order by x desc")
    assert first.fetchone() == (0,) and second.fetchone() == (ROWS - 1,)
    states = [w["state"] for w in con.pool_status()["workers"]]
    assert states == ["leased", "leased"]
    assert len(first.fetchall()) == ROWS - 1 and len(second.fetchall()) == ROWS - 1
    assert [w["state"] for w in con.pool_status()["workers"]] == ["idle", "idle"]


def test_a_driver_importable_from_the_current_directory_reaches_workers(path, monkeypatch):
    """An application run from its own directory imports its driver from there; the
    workers must find it too (they may put the directory after the standard library)."""
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.chdir(checkout)
    con = mpsqlite.connect(path, workers=1, driver=DRIVER)
    try:
        _fill(con)
        sql = "select x from t"
        assert len(con.execute(sql).fetchall()) == ROWS
        for _ in range(2):
            assert len(con.execute(sql).fetchall()) == ROWS
        assert con.pool_status()["offloaded_statements"] == 2
        assert con.pool_status()["restarts"] == 0
    finally:
        con.close()


# Counts to ?, yielding the numbers up to the second ?: a statement as long as asked.
_COUNT = ("with recursive c(x) as (select 1 union all select x + 1 from c where x < ?) "
          "select x from c where x <= ?")
_FOREVER = 10**12


def test_statement_timeout_interrupts_a_statement_in_the_caller(driver, path, tmp_path,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    with closing(mpsqlite.connect(path, driver=driver.__name__, statement_timeout=0.2)) as con:
        with pytest.raises(driver.OperationalError,
                           match=r"statement exceeded statement_timeout=0.2 s and was "
                                 r"interrupted$"):
            con.execute(_COUNT, (_FOREVER, 1)).fetchall()
        assert con.execute("select 1").fetchall() == [(1,)]
        # a SELECT still running when its rows are fetched is timed there too
        cur = con.execute(_COUNT, (_FOREVER, _FOREVER))
        with pytest.raises(driver.OperationalError, match="statement_timeout=0.2 s"):
            cur.fetchall()
        assert con.execute(_COUNT, (5, 5)).fetchall() == [(i,) for i in range(1, 6)]


def test_statement_timeout_interrupts_a_statement_on_a_worker(driver, path, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    with closing(mpsqlite.connect(path, driver=driver.__name__, statement_timeout=0.5)) as con:
        assert len(con.execute(_COUNT, (ROWS, ROWS)).fetchall()) == ROWS  # judged heavy
        with pytest.raises(driver.OperationalError,
                           match=r"statement_timeout=0.5 s and was interrupted on worker "
                                 r"process \d+$"):
            con.execute(_COUNT, (_FOREVER, 1)).fetchall()
        (worker,) = con.pool_status()["workers"]  # interrupted, not replaced
        assert len(con.execute(_COUNT, (ROWS, ROWS)).fetchall()) == ROWS
        status = con.pool_status()
        assert status["offloaded_statements"] == 1
        assert [(w["pid"], w["errors"]) for w in status["workers"]] == [(worker["pid"], 1)]


def test_statement_timeout_needs_a_driver_that_can_interrupt(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(sqlite3.NotSupportedError, match="connections have no interrupt") as e:
        mpsqlite.connect(path, driver=DRIVER, statement_timeout=1,
                         driver_kwargs={"interruptible": False})
    assert isinstance(e.value, _minidriver.OperationalError)
    with closing(mpsqlite.connect(path, driver=DRIVER, log_slow_statements=1,
                                  driver_kwargs={"interruptible": False})) as con:
        assert con.execute("select 1").fetchall() == [(1,)]


def test_slow_statements_of_another_driver_are_logged(driver, path, tmp_path, monkeypatch,
                                                      caplog):
    monkeypatch.chdir(tmp_path)
    with closing(mpsqlite.connect(path, driver=driver.__name__,
                                  log_slow_statements=0.05)) as con, \
            caplog.at_level(logging.WARNING, logger="mpsqlite.statements"):
        assert con.execute("select 1").fetchall() == [(1,)]
        assert con.execute(_COUNT, (3_000_000, 1)).fetchall() == [(1,)]
    (record,) = [r for r in caplog.records if r.name == "mpsqlite.statements"]
    assert "in the calling process" in record.getMessage()
    assert "with recursive c(x)" in record.getMessage()

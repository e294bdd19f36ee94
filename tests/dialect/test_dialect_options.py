"""Registration, DBAPI, URL options and connect_args of the sqlite+mpsqlite dialect."""

from __future__ import annotations

import sqlite3
import threading
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from sqlalchemy import create_engine, exc, pool, text
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url
from sqlalchemy_mpsqlite import MPSQLiteDialect

import mpsqlite


def test_entry_point_names_the_dialect() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="sqlalchemy.dialects")}
    assert names["sqlite.mpsqlite"] == "sqlalchemy_mpsqlite:MPSQLiteDialect"
    assert make_url("sqlite+mpsqlite:///x.db").get_dialect() is MPSQLiteDialect


def test_dialect_is_a_pysqlite_subclass_with_mpsqlite_as_dbapi(engine) -> None:
    dialect = engine.dialect
    assert isinstance(dialect, SQLiteDialect_pysqlite)
    assert "import_dbapi" in vars(MPSQLiteDialect)
    assert dialect.dbapi is mpsqlite
    assert dialect.supports_statement_cache is True
    assert (engine.name, engine.driver) == ("sqlite", "mpsqlite")
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        # mpsqlite's connection is a sqlite3 connection, but mpsqlite's own subclass
        assert isinstance(raw, mpsqlite.Connection)
        assert isinstance(raw, sqlite3.Connection)
        assert type(raw) is not sqlite3.Connection
        assert raw.pool_status()["database"] == str(engine.url.database)


def test_workers_from_url_sizes_the_pool(make_engine, pool_of) -> None:
    engine = make_engine("workers=2")
    with engine.connect() as conn:
        conn.execute(text("select 1"))
    assert pool_of()["size"] == 2


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("workers=abc", "'workers'"),
        ("workers=0", "'workers'"),
        ("timeout=soon", "'timeout'"),
        ("wal=maybe", "'wal'"),
        ("begin=later", "'begin'"),
        ("wrokers=4", "Unknown mpsqlite option 'wrokers'"),
        ("mode=ro", "also needs uri=true"),
        ("workers=2&workers=3", "more than once"),
    ],
)
def test_bad_url_options_raise_argument_error(tmp_path: Path, query: str, fragment: str) -> None:
    url = f"sqlite+mpsqlite:///{tmp_path / 'x.db'}?{query}"
    with pytest.raises(exc.ArgumentError, match=fragment.replace("(", r"\(")):
        create_engine(url)
    assert not (tmp_path / "x.db").exists()


def test_url_option_values_are_coerced(tmp_path: Path) -> None:
    url = make_url(
        f"sqlite+mpsqlite:///{tmp_path / 'x.db'}?workers=3&timeout=2.5&wal=false"
        "&max_write_seconds=none&check_same_thread=yes&begin=IMMEDIATE"
    )
    dialect = MPSQLiteDialect(dbapi=mpsqlite)
    args, kwargs = dialect.create_connect_args(url)
    assert args == [str(tmp_path / "x.db")]
    assert kwargs == {
        "workers": 3,
        "timeout": 2.5,
        "wal": False,
        "max_write_seconds": None,
        "check_same_thread": True,
    }
    assert dialect.begin_mode == "immediate"


def test_uri_mode_passes_sqlite_uri_parameters(tmp_path: Path) -> None:
    dialect = MPSQLiteDialect(dbapi=mpsqlite)
    url = make_url(f"sqlite+mpsqlite:///file:{tmp_path / 'x.db'}?mode=ro&uri=true&workers=2")
    args, kwargs = dialect.create_connect_args(url)
    assert args == [f"file:{tmp_path / 'x.db'}?mode=ro"]
    assert kwargs == {"uri": True, "workers": 2, "check_same_thread": False}


def test_check_same_thread_defaults_as_stock_pysqlite(tmp_path: Path) -> None:
    """A file database's QueuePool hands connections between threads; :memory: does not."""
    dialect = MPSQLiteDialect(dbapi=mpsqlite)
    _, kwargs = dialect.create_connect_args(make_url(f"sqlite+mpsqlite:///{tmp_path / 'x.db'}"))
    assert kwargs["check_same_thread"] is False
    _, kwargs = dialect.create_connect_args(make_url("sqlite+mpsqlite://"))
    assert "check_same_thread" not in kwargs
    url = make_url(f"sqlite+mpsqlite:///{tmp_path / 'x.db'}?check_same_thread=true")
    assert dialect.create_connect_args(url)[1]["check_same_thread"] is True


def test_file_engine_connection_can_move_between_threads(make_engine) -> None:
    engine = make_engine(pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        conn.execute(text("create table t (v)"))
        conn.commit()
        first = conn.connection.dbapi_connection
    seen: list = []

    def other_thread() -> None:
        with engine.connect() as conn:  # the same pooled DBAPI connection, another thread
            seen.append(conn.connection.dbapi_connection is first)
            conn.execute(text("insert into t values (1)"))
            conn.commit()
            seen.append(conn.execute(text("select v from t")).scalar())

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join(60)
    assert seen == [True, 1]


def test_relative_path_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    dialect = MPSQLiteDialect(dbapi=mpsqlite)
    args, _ = dialect.create_connect_args(make_url("sqlite+mpsqlite:///rel.db"))
    assert args == [str(tmp_path / "rel.db")]


def test_host_in_url_is_rejected() -> None:
    with pytest.raises(exc.ArgumentError, match="Invalid mpsqlite URL"):
        create_engine("sqlite+mpsqlite://somehost/x.db")


def test_driver_isolation_level_needs_begin_driver(tmp_path: Path) -> None:
    with pytest.raises(exc.ArgumentError, match="isolation_level"):
        create_engine(f"sqlite+mpsqlite:///{tmp_path / 'x.db'}?isolation_level=IMMEDIATE")


@pytest.mark.parametrize(
    ("connect_args", "fragment"),
    [
        ({"workers": "4"}, "'workers'"),
        ({"workers": 0}, "'workers'"),
        ({"timeout": -1}, "'timeout'"),
        ({"wrokers": 4}, "Unknown mpsqlite connect argument 'wrokers'"),
    ],
)
def test_bad_connect_args_raise_argument_error(
    make_engine, connect_args: dict, fragment: str
) -> None:
    engine = make_engine(connect_args=connect_args)
    with pytest.raises(exc.ArgumentError, match=fragment):
        engine.connect()


def test_connect_args_reach_mpsqlite(make_engine, pool_of, db_path: Path) -> None:
    engine = create_engine(f"sqlite+mpsqlite:///{db_path}", connect_args={"workers": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        assert pool_of()["size"] == 2
    finally:
        engine.dispose()  # make_engine's teardown stops the pool


def test_begin_as_create_engine_argument(make_engine) -> None:
    assert make_engine(begin="exclusive").dialect.begin_mode == "exclusive"
    assert make_engine().dialect.begin_mode == "write"
    with pytest.raises(exc.ArgumentError, match="'begin'"):
        make_engine(begin="sometimes")


def test_pool_classes(make_engine) -> None:
    assert isinstance(make_engine().pool, pool.QueuePool)
    memory = create_engine("sqlite+mpsqlite://")
    try:
        assert isinstance(memory.pool, pool.SingletonThreadPool)
        with memory.connect() as conn:
            assert conn.execute(text("select 40 + 2")).scalar() == 42
    finally:
        memory.dispose()

"""statement_timeout and log_slow_statements through the sqlite+mpsqlite dialect: from the
URL query and from connect_args, checked before a connection opens."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import exc, text
from sqlalchemy.engine import make_url
from sqlalchemy_mpsqlite import MPSQLiteDialect

import mpsqlite

ENDLESS = "with recursive c(n) as (select 1 union all select n + 1 from c) select count(*) from c"


def test_url_options_are_coerced(tmp_path: Path) -> None:
    url = make_url(f"sqlite+mpsqlite:///{tmp_path / 'x.db'}?statement_timeout=0.5"
                   "&log_slow_statements=none")
    _, kwargs = MPSQLiteDialect(dbapi=mpsqlite).create_connect_args(url)
    assert kwargs["statement_timeout"] == 0.5 and kwargs["log_slow_statements"] is None


@pytest.mark.parametrize("how", ["url", "connect_args"])
def test_statement_timeout_interrupts_through_the_engine(make_engine, how: str) -> None:
    if how == "url":
        engine = make_engine("statement_timeout=0.2")
    else:
        engine = make_engine(connect_args={"statement_timeout": 0.2})
    with engine.connect() as conn:
        with pytest.raises(exc.OperationalError, match=r"statement_timeout=0.2 s"):
            conn.execute(text(ENDLESS))
        conn.rollback()
        assert conn.execute(text("select 42")).scalar() == 42


def test_log_slow_statements_through_the_url(make_engine, caplog) -> None:
    engine = make_engine("statement_timeout=0.2&log_slow_statements=0.1")
    with caplog.at_level(logging.WARNING, logger="mpsqlite.statements"), engine.connect() as conn:
        with pytest.raises(exc.OperationalError):
            conn.execute(text(ENDLESS))
    assert [r.name for r in caplog.records if "slow statement" in r.getMessage()] == [
        "mpsqlite.statements"]


@pytest.mark.parametrize("option", ["statement_timeout", "log_slow_statements"])
@pytest.mark.parametrize("how", ["url", "connect_args"])
def test_bad_values_raise_argument_error(make_engine, option: str, how: str) -> None:
    if how == "url":
        engine = make_engine(f"{option}=-1")
    else:
        engine = make_engine(connect_args={option: 0})
    with pytest.raises(exc.ArgumentError, match=f"'{option}'"):
        engine.connect()


def test_non_number_in_url_raises_argument_error(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    with pytest.raises(exc.ArgumentError, match="'statement_timeout'"):
        create_engine(f"sqlite+mpsqlite:///{tmp_path / 'x.db'}?statement_timeout=soon")

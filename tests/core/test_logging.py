"""mpsqlite's logging: worker crashes and replacements on ``mpsqlite.workers`` (real
SIGKILLs; the kill for statement_timeout is in test_statement_timeout), slow statements
on ``mpsqlite.statements`` (log_slow_statements), and a library that configures no
logging of its own."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import pytest

import mpsqlite
from tests.core._heavy import BIG, fill_big, mark_heavy, run_remote, staller, wait_for_file
from tests.core._procs import in_thread, wait_fully_exited, worker_pids

pytestmark = pytest.mark.timeout(90)

_BIG_SQL = "select x, s from big order by x"
NAP = 0.2


def napper() -> Any:
    """SQL function ``nap(x, seconds)``: returns ``x``, after sleeping when ``x`` is 0."""

    def nap(x: int, seconds: float) -> int:
        import time

        if x == 0:
            time.sleep(seconds)
        return x

    return nap


def _records(caplog, logger: str, level: int = logging.DEBUG) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno >= level]


def test_the_library_configures_no_logging():
    """Handlers, levels and output are the application's choice (the logging HOWTO)."""
    import mpsqlite._timeout  # noqa: F401 - the modules that define the loggers
    import mpsqlite._workers  # noqa: F401

    for name in ("mpsqlite", "mpsqlite.workers", "mpsqlite.statements"):
        logger = logging.getLogger(name)
        assert all(isinstance(h, logging.NullHandler) for h in logger.handlers), name
        assert logger.level == logging.NOTSET and logger.propagate, name


def test_killed_idle_worker_is_logged_with_pid_signal_and_database(mp_connect, db_path,
                                                                    caplog):
    conn = mp_connect(workers=1)
    fill_big(conn)
    mark_heavy(conn, _BIG_SQL)
    run_remote(conn, _BIG_SQL)
    (victim,) = worker_pids(conn)
    os.kill(victim, signal.SIGKILL)
    wait_fully_exited(victim)
    with caplog.at_level(logging.INFO, logger="mpsqlite"):
        assert len(run_remote(conn, _BIG_SQL)) == BIG  # on its replacement
    (new,) = worker_pids(conn)
    (crash,) = _records(caplog, "mpsqlite.workers", logging.WARNING)
    text = crash.getMessage()
    assert f"process {victim} " in text and "SIGKILL" in text and str(db_path) in text
    (started,) = [r for r in _records(caplog, "mpsqlite.workers") if r.levelno == logging.INFO]
    assert f"process {new} " in started.getMessage() and str(db_path) in started.getMessage()


def test_worker_killed_mid_read_is_logged_once(mp_connect, db_path, tmp_path, caplog):
    conn = mp_connect(workers=1, check_same_thread=False)
    conn.create_function("stall", 1, staller())
    assert conn.execute("select stall(?)", ("",)).fetchone() == (0,)  # heavy by CPU
    marker = tmp_path / "pid"
    with caplog.at_level(logging.INFO, logger="mpsqlite"):
        thread, _, errors = in_thread(
            lambda: conn.execute("select stall(?)", (str(marker),)).fetchall())
        victim = int(wait_for_file(marker))
        os.kill(victim, signal.SIGKILL)
        thread.join(20)
        assert len(errors) == 1 and isinstance(errors[0], mpsqlite.WorkerDied)
    warnings = _records(caplog, "mpsqlite.workers", logging.WARNING)
    assert [f"process {victim} " in r.getMessage() and "SIGKILL" in r.getMessage()
            for r in warnings] == [True]


def test_slow_statement_is_logged_once_without_its_parameters(mp_connect, db_path, caplog):
    conn = mp_connect(log_slow_statements=NAP / 2)
    conn.create_function("nap", 2, napper())
    padding = "x" * 1000
    sql = f"select nap(0, ?), ? as '{padding}'"
    with caplog.at_level(logging.WARNING, logger="mpsqlite.statements"):
        assert conn.execute(sql, (NAP, "secret-parameter")).fetchall() == [(0, "secret-parameter")]
    (record,) = _records(caplog, "mpsqlite.statements")
    text = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "in the calling process" in text and str(db_path) in text
    assert "select nap(0, ?)" in text and "secret-parameter" not in text
    assert padding not in text and text.endswith("...") and len(text) < 600
    elapsed = float(text.split("slow statement: ")[1].split(" s ")[0])
    assert elapsed >= NAP / 2


def test_quick_statements_are_not_logged(mp_connect, caplog):
    conn = mp_connect(log_slow_statements=30)
    with caplog.at_level(logging.DEBUG, logger="mpsqlite"):
        conn.execute("create table t(x)")
        conn.executemany("insert into t values (?)", [(1,), (2,)])
        assert conn.execute("select count(*) from t").fetchall() == [(2,)]
    assert _records(caplog, "mpsqlite.statements") == []


def test_slow_fetches_are_counted_and_logged_once(mp_connect, caplog):
    """The time a SELECT spends in its fetches counts; many slow rows make one record."""
    conn = mp_connect(log_slow_statements=NAP)
    conn.create_function("nap", 2, napper())
    sql = ("with recursive c(n) as (select 0 union all select n + 1 from c where n < 3) "
           "select nap(n % 2, ?) from c")  # rows 0 and 2 nap
    with caplog.at_level(logging.WARNING, logger="mpsqlite.statements"):
        assert [r[0] for r in conn.execute(sql, (NAP * 0.6,))] == [0, 1, 0, 1]
    assert len(_records(caplog, "mpsqlite.statements")) == 1


def test_slow_statement_on_a_worker_names_the_worker(mp_connect, caplog):
    conn = mp_connect(workers=1, log_slow_statements=NAP / 2)
    fill_big(conn)
    conn.create_function("nap", 2, napper())
    sql = "select x, nap(x, ?) from big"
    with caplog.at_level(logging.WARNING, logger="mpsqlite.statements"):
        mark_heavy(conn, sql, (0.0,))
        caplog.clear()  # only the run on the worker matters here
        assert len(run_remote(conn, sql, (NAP,))) == BIG
    (pid,) = worker_pids(conn)
    (record,) = _records(caplog, "mpsqlite.statements")
    assert f"on worker process {pid} " in record.getMessage()

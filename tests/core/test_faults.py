"""Fault handling in mpsqlite: worker processes killed mid-query and mid-transaction,
and bad input that must leave the pool healthy. Real processes and real signals;
pytest-timeout turns any hang into a failure."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from ._procs import committed_rows, still_running, worker_pids

pytestmark = pytest.mark.timeout(90)

_DIED = r"worker.*died"
_INFINITE_COUNT = (
    "with recursive c(n) as (select 1 union all select n + 1 from c where n < 100000000000) "
    "select count(*) from c"
)


def _hang_and_report(marker: str) -> int:
    """UDF: write this worker's pid to ``marker``, then block (until killed)."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(300)
    return 0


def _wait_for_file(path: Path) -> str:
    while not path.exists() or not path.read_text():
        time.sleep(0.02)
    return path.read_text()


def _in_thread(call) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``call()`` in a daemon thread; the list receives what it raised."""
    errors: list[BaseException] = []

    def _body() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    thread = threading.Thread(target=_body, daemon=True)
    thread.start()
    return thread, errors


@pytest.fixture
def table(mp_connect):
    """An mpsqlite connection with table ``t(x)`` holding committed rows 1, 2, 3.

    ``local_reads=False``: every statement runs in a worker process, the thing killed here."""
    conn = mp_connect(local_reads=False)
    conn.execute("create table t(x)")
    conn.executemany("insert into t values (?)", [(1,), (2,), (3,)])
    conn.commit()
    return conn


def _assert_replaced(conn, killed: int, restarts_before: int) -> None:
    """The pool replaced the killed worker and answers queries again."""
    assert conn.execute("select 42").fetchone() == (42,)
    status = conn.pool_status()
    assert status["restarts"] == restarts_before + 1
    assert killed not in worker_pids(conn)
    assert len(status["workers"]) == status["size"]


def test_kill_worker_mid_query_udf(table, tmp_path, db_path):
    marker = tmp_path / "pid"
    table.create_function("hang", 1, _hang_and_report)
    restarts = table.pool_status()["restarts"]
    thread, errors = _in_thread(lambda: table.execute("select hang(?)", (str(marker),)).fetchall())
    victim = int(_wait_for_file(marker))
    assert victim in worker_pids(table)
    os.kill(victim, signal.SIGKILL)
    thread.join(10)
    assert not thread.is_alive(), "caller still blocked after its worker was killed"
    assert len(errors) == 1
    with pytest.raises(sqlite3.OperationalError, match=_DIED):
        raise errors[0]
    _assert_replaced(table, victim, restarts)
    assert committed_rows(db_path) == [(1,), (2,), (3,)]


def test_kill_worker_mid_long_sql_query(table):
    restarts = table.pool_status()["restarts"]
    thread, errors = _in_thread(lambda: table.execute(_INFINITE_COUNT).fetchall())
    victim = None
    while victim is None:
        busy = [w["pid"] for w in table.pool_status()["workers"] if w["state"] == "busy"]
        victim = busy[0] if busy else None
        time.sleep(0.02)
    os.kill(victim, signal.SIGKILL)
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1
    with pytest.raises(sqlite3.OperationalError, match=_DIED):
        raise errors[0]
    _assert_replaced(table, victim, restarts)


def _open_transaction_on_known_worker(table) -> int:
    """Insert rows 4 and 5 without committing; return the pid of the worker holding them."""
    table.create_function("pid", 0, os.getpid)
    table.execute("insert into t values (4)")
    table.execute("insert into t values (5)")
    assert table.in_transaction
    (victim,) = table.execute("select pid()").fetchone()
    assert victim in worker_pids(table)
    return victim


@pytest.mark.parametrize("next_call", ["commit", "rollback"])
def test_kill_worker_mid_transaction_then_end_it(table, db_path, next_call):
    restarts = table.pool_status()["restarts"]
    victim = _open_transaction_on_known_worker(table)
    os.kill(victim, signal.SIGKILL)
    assert still_running([victim], 10) == []
    if next_call == "commit":
        with pytest.raises(sqlite3.OperationalError, match=_DIED):
            table.commit()
    else:
        table.rollback()  # the death rolled the transaction back, which is what was asked
    assert not table.in_transaction
    assert table.execute("select x from t order by x").fetchall() == [(1,), (2,), (3,)]
    assert committed_rows(db_path) == [(1,), (2,), (3,)]
    _assert_replaced(table, victim, restarts)


def test_kill_worker_mid_transaction_then_execute(table, db_path, mp_connect):
    """The next statement reports the lost transaction; after rollback() all is normal."""
    restarts = table.pool_status()["restarts"]
    victim = _open_transaction_on_known_worker(table)
    os.kill(victim, signal.SIGKILL)
    assert still_running([victim], 10) == []
    with pytest.raises(sqlite3.OperationalError, match=_DIED):
        table.execute("insert into t values (6)")
    other = mp_connect(local_reads=False)
    assert other.execute("select x from t order by x").fetchall() == [(1,), (2,), (3,)]
    table.rollback()
    assert not table.in_transaction
    assert committed_rows(db_path) == [(1,), (2,), (3,)]
    _assert_replaced(table, victim, restarts)


def test_kill_worker_mid_statement_in_transaction(table, tmp_path, db_path):
    marker = tmp_path / "pid"
    table.create_function("hang", 1, _hang_and_report)
    table.execute("insert into t values (4)")
    thread, errors = _in_thread(
        lambda: table.execute("insert into t select hang(?)", (str(marker),))
    )
    victim = int(_wait_for_file(marker))
    os.kill(victim, signal.SIGKILL)
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1
    with pytest.raises(sqlite3.OperationalError, match=_DIED):
        raise errors[0]
    with pytest.raises(sqlite3.OperationalError, match=_DIED):
        table.commit()  # the transaction holding row 4 is gone: commit must not pretend
    assert committed_rows(db_path) == [(1,), (2,), (3,)]
    table.execute("insert into t values (7)")
    table.commit()
    assert committed_rows(db_path) == [(1,), (2,), (3,), (7,)]


def test_committed_data_survives_killing_every_worker(table, db_path):
    table.execute("select 1").fetchall()
    for pid in worker_pids(table):
        os.kill(pid, signal.SIGKILL)
    assert still_running(list(worker_pids(table)), 10) == []
    result = None
    for _ in range(table.pool_status()["size"] + 1):
        try:
            result = table.execute("select x from t order by x").fetchall()
            break
        except sqlite3.OperationalError as exc:
            assert "died" in str(exc)
    assert result == [(1,), (2,), (3,)]
    assert committed_rows(db_path) == [(1,), (2,), (3,)]


def test_a_replacement_worker_gets_the_pools_functions_and_pragmas(table, db_path):
    table.create_function("twice", 1, lambda x: 2 * x)
    table.execute("pragma foreign_keys = on")
    table.execute("create table child(x references t(x))")
    table.commit()
    table.execute("create unique index t_x on t(x)")
    table.commit()
    assert table.execute("select twice(21)").fetchone() == (42,)
    for pid in worker_pids(table):
        os.kill(pid, signal.SIGKILL)
    assert still_running(list(worker_pids(table)), 10) == []
    for _ in range(table.pool_status()["size"] + 1):
        try:
            assert table.execute("select twice(x) from t order by x").fetchall() == [
                (2,), (4,), (6,)]
            break
        except sqlite3.OperationalError as exc:
            assert "died" in str(exc)
    else:
        pytest.fail("the pool never answered after its workers were killed")
    assert table.pool_status()["restarts"] >= 1
    assert table.execute("pragma foreign_keys").fetchone() == (1,)
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        table.execute("insert into child values (99)")
    table.rollback()


def test_with_block_reports_the_applications_error_when_the_worker_died(table, db_path):
    victim = _open_transaction_on_known_worker(table)
    os.kill(victim, signal.SIGKILL)
    assert still_running([victim], 10) == []
    with pytest.raises(ValueError, match="the application's own error"):
        with table:  # rollback on the way out must not replace the application's error
            raise ValueError("the application's own error")
    assert not table.in_transaction
    assert committed_rows(db_path) == [(1,), (2,), (3,)]


def _threads_alive(pid: int) -> bool:
    """Whether any thread of ``pid`` is not yet a zombie."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    return True
        except OSError:
            pass
    return False


def test_a_worker_that_died_while_leased_is_replaced_not_handed_on(mp_connect):
    holder = mp_connect(workers=1, local_reads=False)
    holder.execute("create table big(x)")
    holder.executemany("insert into big values (?)", [(i,) for i in range(1000)])
    holder.commit()
    cur = holder.execute("select x from big")  # more rows than one reply: keeps the worker
    assert cur.fetchone() == (0,)
    (victim,) = worker_pids(holder)
    waiter = mp_connect(workers=1, local_reads=False)
    result: list = []
    thread, errors = _in_thread(
        lambda: result.append(waiter.execute("select count(*) from big").fetchone()))
    while not holder.pool_status()["waiting"]:
        time.sleep(0.01)
    os.kill(victim, signal.SIGKILL)
    assert still_running([victim], 10) == []
    # The leader turns zombie before the other threads are torn down and the
    # process's sockets close; only then can anyone see that it died.
    deadline = time.monotonic() + 10
    while _threads_alive(victim) and time.monotonic() < deadline:
        time.sleep(0.01)
    cur.close()  # gives the dead worker back: the waiter must get a live one
    thread.join(20)
    assert not thread.is_alive()
    assert errors == [] and result == [(1000,)]
    assert victim not in worker_pids(holder)


def test_a_later_unpicklable_converter_does_not_stop_replacements(mp_connect):
    con = mp_connect(local_reads=False, detect_types=sqlite3.PARSE_DECLTYPES)
    con.execute("create table t(x)")
    con.commit()
    lock = threading.Lock()
    sqlite3.register_converter("later", lambda raw, _lock=lock: raw)
    try:
        for round_ in range(2):
            for pid in worker_pids(con):
                os.kill(pid, signal.SIGKILL)
            assert still_running(list(worker_pids(con)), 10) == []
            for _ in range(con.pool_status()["size"] + 1):
                try:
                    assert con.execute("select count(*) from t").fetchone() == (0,)
                    break
                except sqlite3.OperationalError as exc:
                    assert "died" in str(exc)
            else:
                pytest.fail(f"no answer after killing every worker (round {round_})")
            status = con.pool_status()
            assert len(status["workers"]) == status["size"]
    finally:
        del sqlite3.converters["LATER"]


class _Unpicklable:
    """A parameter that can be neither pickled nor adapted."""

    def __reduce__(self):
        raise TypeError("cannot pickle _Unpicklable")


def _reference_error(sql: str, params) -> Exception:
    """What the stdlib sqlite3 raises for ``sql`` with ``params``."""
    ref = sqlite3.connect(":memory:")
    try:
        ref.execute(sql, params)
    except Exception as exc:  # noqa: BLE001 - any error is the reference
        return exc
    finally:
        ref.close()
    raise AssertionError("sqlite3 accepted the parameters")


def _bad_lock_param(conn):
    conn.execute("insert into t values (?)", (threading.Lock(),))


def _bad_unpicklable_param(conn):
    conn.execute("select ?", (_Unpicklable(),))


def _bad_lock_in_executemany(conn):
    conn.executemany("insert into t values (?)", [(10,), (threading.Lock(),), (11,)])


def _bad_closed_cursor(conn):
    cur = conn.cursor()
    cur.close()
    cur.execute("select 1")


def _bad_param_count(conn):
    conn.execute("select ?, ?", (1,))


def _bad_missing_named(conn):
    conn.execute("select :a", {"b": 1})


def _bad_syntax(conn):
    conn.execute("this is not sql")


def _bad_constraint(conn):
    conn.execute("create table if not exists u(x unique)")
    conn.execute("insert into u values (1)")
    conn.execute("insert into u values (1)")


def _bad_udf(conn):
    conn.create_function("fail", 0, lambda: 1 / 0)
    conn.execute("select fail()").fetchall()


@pytest.mark.parametrize(
    "bad",
    [
        _bad_lock_param,
        _bad_unpicklable_param,
        _bad_lock_in_executemany,
        _bad_closed_cursor,
        _bad_param_count,
        _bad_missing_named,
        _bad_syntax,
        _bad_constraint,
        _bad_udf,
    ],
    ids=lambda f: f.__name__.removeprefix("_bad_"),
)
def test_bad_input_keeps_pool_healthy(table, db_path, bad):
    before = table.pool_status()
    for _ in range(3):
        with pytest.raises(sqlite3.Error):
            bad(table)
    table.rollback()
    assert table.execute("select x from t order by x").fetchall() == [(1,), (2,), (3,)]
    after = table.pool_status()
    assert after["restarts"] == before["restarts"]
    assert worker_pids(table) == {w["pid"] for w in before["workers"]}
    assert committed_rows(db_path) == [(1,), (2,), (3,)]


@pytest.mark.parametrize("value", [threading.Lock(), _Unpicklable()], ids=["lock", "custom"])
def test_unpicklable_parameter_error_like_sqlite3(table, value):
    """Same class (ProgrammingError from 3.11) and message as sqlite3's unsupported type."""
    expected = _reference_error("select ?", (value,))
    with pytest.raises(type(expected)) as info:
        table.execute("select ?", (value,))
    assert type(info.value) is type(expected)
    assert str(info.value) == str(expected)
    if sys.version_info >= (3, 11):
        assert isinstance(info.value, sqlite3.ProgrammingError)

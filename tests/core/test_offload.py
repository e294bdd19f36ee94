"""Offload: every read first runs in the caller; one that returned many rows, or spent long
in the connection's Python functions, runs on a worker process next time, on a connection
equivalent to the caller's. What could be seen never moves: reads in a transaction, and
connections with TEMP objects, in-memory attachments, callbacks, converters, another
text_factory or a cursor class with fetch methods of its own."""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import weakref
from contextlib import closing

import pytest

import mpsqlite
from tests.core._heavy import (
    BIG,
    burner,
    fill_big,
    mark_heavy,
    offload,
    offloaded,
    run_remote,
)
from tests.core._procs import worker_pids

pytestmark = pytest.mark.timeout(120)

_ALL = "select x, s from big order by x"
_ALL_ROWS = [(i, f"s{i}") for i in range(BIG)]


def _pid_function():
    def pid() -> int:
        import os

        return os.getpid()

    return pid


@pytest.fixture
def conn(mp_connect):
    c = mp_connect()
    fill_big(c)
    return c


def test_cheap_reads_run_in_the_caller_and_see_commits(conn, mp_connect):
    before = conn.pool_status()["local_statements"]
    for i in range(1, 50):
        assert conn.execute("select s from big where x = ?", (i,)).fetchone() == (f"s{i}",)
    status = conn.pool_status()
    assert status["local_statements"] - before == 49
    assert status["offloaded_statements"] == 0 and status["workers"] == []
    other = mp_connect()
    other.execute("update big set s = 'new' where x = 1")
    assert conn.execute("select s from big where x = 1").fetchone() == ("s1",)  # uncommitted
    other.commit()
    assert conn.execute("select s from big where x = 1").fetchone() == ("new",)


def test_a_read_that_returned_many_rows_runs_on_a_worker_next_time(conn):
    conn.create_function("pid", 0, _pid_function())
    sql = "select x, pid() from big order by x"
    local = conn.execute(sql).fetchall()
    assert {pid for _, pid in local} == {os.getpid()}
    assert conn.pool_status()["heavy_statements"] == 1
    remote = run_remote(conn, sql)
    (worker,) = worker_pids(conn)
    assert worker != os.getpid()
    assert remote == [(x, worker) for x, _ in local]


def test_a_heavy_read_after_a_failed_statement_is_not_refused_with_its_error(conn):
    """Before a read may move, its cursor's previous read is ended with an empty statement;
    on Python 3.12+ that raises the connection's last error on a new cursor (here
    ``Connection.execute``'s), which reached the application for a valid read."""
    mark_heavy(conn, _ALL)
    assert run_remote(conn, _ALL) == _ALL_ROWS  # the connection's state is known: no query
    with pytest.raises(sqlite3.OperationalError, match="no such table: nosuch"):
        conn.execute("select * from nosuch")
    before = offloaded(conn)
    assert conn.execute(_ALL).fetchall() == _ALL_ROWS
    assert offloaded(conn) == before + 1


def _modules_function():
    def modules(_x: int) -> str:
        import sys

        return ",".join(sorted(m for m in sys.modules if m.startswith("mpsqlite")))

    return modules


def _version_function():
    def version(_x: int) -> str:
        import mpsqlite

        return mpsqlite.sqlite_version

    return version


def test_a_worker_starts_with_three_modules_and_loads_the_rest_when_asked(conn):
    conn.create_function("modules", 1, _modules_function())
    conn.create_function("version", 1, _version_function())
    sql = "select x, modules(x) from big order by x"
    mark_heavy(conn, sql)
    (_, loaded), *_ = run_remote(conn, sql)
    assert loaded == "mpsqlite,mpsqlite._timer,mpsqlite._wire,mpsqlite._worker"
    sql = "select x, version(x), modules(x) from big order by x"
    mark_heavy(conn, sql)
    (_, version, loaded), *_ = run_remote(conn, sql)
    assert version == sqlite3.sqlite_version
    assert "mpsqlite.connection" in loaded.split(",")


@pytest.mark.parametrize("how", ["fetchall", "fetchmany", "fetchmany-default-size"])
def test_rows_count_through_fetchmany_too(conn, how):
    cur = conn.execute(_ALL)
    if how == "fetchall":
        rows = cur.fetchall()
    else:
        cur.arraysize = 100
        rows = []
        while True:
            chunk = cur.fetchmany(300) if how == "fetchmany" else cur.fetchmany()
            if not chunk:
                break
            rows += chunk
    assert rows == _ALL_ROWS
    assert run_remote(conn, _ALL) == _ALL_ROWS


def test_rows_read_with_fetchone_or_iteration_do_not_make_a_read_heavy(conn):
    for _ in range(2):
        assert list(conn.execute(_ALL)) == _ALL_ROWS
        cur = conn.execute(_ALL)
        assert [cur.fetchone() for _ in range(BIG)] == _ALL_ROWS
    assert offloaded(conn) == 0


def test_a_read_calling_a_slow_python_function_runs_on_a_worker_next_time(conn):
    conn.create_function("burn", 1, burner())
    sql = "select burn(s) from big where x = ?"
    assert conn.execute(sql, (7,)).fetchall() == [("s7",)]
    assert conn.pool_status()["heavy_statements"] == 1
    assert run_remote(conn, sql, (8,)) == [("s8",)]
    assert run_remote(conn, sql, (9,)) == [("s9",)]  # still heavy: the worker saw the cost


def test_pure_sql_stays_in_the_caller_however_long_sqlite_works(conn):
    sql = ("with recursive r(i) as (select 1 union all select i + 1 from r where i < 200000) "
           "select count(*) from r")
    for _ in range(4):
        assert conn.execute(sql).fetchone() == (200000,)
    status = conn.pool_status()
    assert status["heavy_statements"] == 0 and status["offloaded_statements"] == 0


def test_a_cheap_remote_run_sends_the_read_back_to_the_caller(conn):
    sql = "select x from big where x >= ? order by x"
    mark_heavy(conn, sql, (0,))
    assert run_remote(conn, sql, (BIG - 3,)) == [(BIG - 3,), (BIG - 2,), (BIG - 1,)]
    assert conn.pool_status()["heavy_statements"] == 0
    before = offloaded(conn)
    assert len(conn.execute(sql, (0,)).fetchall()) == BIG  # in the caller again
    assert offloaded(conn) == before


def test_reads_in_a_transaction_stay_in_the_caller_and_see_its_writes(conn):
    conn.create_function("pid", 0, _pid_function())
    sql = "select count(*), max(pid()) from big"
    mark_heavy(conn, "select x, pid() from big")
    conn.execute("insert into big values (-1, 'mine')")
    assert conn.in_transaction
    before = offloaded(conn)
    rows = conn.execute("select x, pid() from big").fetchall()
    assert len(rows) == BIG + 1 and {pid for _, pid in rows} == {os.getpid()}
    assert conn.execute(sql).fetchone() == (BIG + 1, os.getpid())
    assert offloaded(conn) == before
    conn.rollback()
    assert len(run_remote(conn, "select x, pid() from big")) == BIG


def _cursor_observations(cur):
    head = (cur.description, cur.rowcount, cur.lastrowid, cur.fetchone(), cur.fetchmany(3),
            cur.fetchmany(), next(cur), [next(cur) for _ in range(5)])
    return (*head, cur.fetchmany(0), cur.fetchone(), cur.fetchall(), list(cur))  # 0: all


def test_remote_results_behave_as_local_ones(conn):
    local = _cursor_observations(conn.execute(_ALL + " "))  # other text: a first run, local
    assert offloaded(conn) == 0
    mark_heavy(conn, _ALL)
    cur = conn.execute(_ALL)  # on a worker
    assert offloaded(conn) == 1
    assert _cursor_observations(cur) == local
    assert isinstance(cur, sqlite3.Cursor) and type(cur).__name__ == "Cursor"
    cur.execute("select 1")
    assert type(cur) is mpsqlite.Cursor and cur.fetchall() == [(1,)]


def test_row_factories_apply_to_remote_rows(conn):
    mark_heavy(conn, _ALL)
    conn.row_factory = sqlite3.Row
    rows = run_remote(conn, _ALL)
    assert isinstance(rows[0], sqlite3.Row)
    assert rows[5]["s"] == "s5" and rows[5].keys() == ["x", "s"]
    conn.row_factory = lambda cursor, row: {d[0]: v for d, v in zip(cursor.description, row)}
    assert run_remote(conn, _ALL)[7] == {"x": 7, "s": "s7"}


def test_a_cursor_subclass_keeps_its_class_and_methods(conn):
    class Mine(mpsqlite.Cursor):
        def extra(self):
            return "extra"

    cur = conn.cursor(Mine)
    assert cur.execute(_ALL).fetchall() == _ALL_ROWS
    cur.execute(_ALL)
    assert offloaded(conn) == 1
    assert isinstance(cur, Mine) and type(cur).__name__ == "Mine" and cur.extra() == "extra"
    assert cur.fetchall() == _ALL_ROWS
    cur.execute("select 1")
    assert type(cur) is Mine and cur.fetchall() == [(1,)]


def test_a_cursor_with_its_own_fetch_methods_never_moves(conn):
    class Counting(mpsqlite.Cursor):
        fetched = 0

        def fetchall(self):
            rows = super().fetchall()
            Counting.fetched += len(rows)
            return rows

    cur = conn.cursor(Counting)
    for _ in range(3):
        assert cur.execute(_ALL).fetchall() == _ALL_ROWS
    assert Counting.fetched == 3 * BIG
    assert offloaded(conn) == 0


def test_closing_a_partly_read_remote_result_gives_its_worker_back(mp_connect):
    conn = mp_connect(workers=1)
    fill_big(conn)
    mark_heavy(conn, _ALL)
    cur = conn.execute(_ALL)
    assert cur.fetchone() == (0, "s0")
    assert [w["state"] for w in conn.pool_status()["workers"]] == ["leased"]
    cur.close()
    assert [w["state"] for w in conn.pool_status()["workers"]] == ["idle"]
    assert run_remote(conn, _ALL) == _ALL_ROWS  # the same worker serves the next read


def test_a_remote_result_releases_its_snapshot(mp_connect):
    """While a worker holds the rest of a result it holds a read snapshot (a TRUNCATE
    checkpoint cannot finish); once the result is read or closed the snapshot is gone."""
    conn = mp_connect(workers=1, timeout=0.1)
    other = mp_connect(timeout=0.1)
    fill_big(conn)
    mark_heavy(conn, _ALL)

    def truncate_checkpoint_busy() -> int:
        return other.execute("pragma wal_checkpoint(truncate)").fetchone()[0]

    for finish in ("fetchall", "close"):
        cur = conn.execute(_ALL)
        assert cur.fetchone() == (0, "s0")
        conn.execute("update big set s = ? where x = ?", (finish, BIG - 1))  # after its snapshot
        conn.commit()
        assert truncate_checkpoint_busy() == 1
        with pytest.raises(sqlite3.OperationalError, match="database table is locked"):
            conn.execute("pragma wal_checkpoint(truncate)")  # as sqlite3: a read is pending
        if finish == "fetchall":
            assert cur.fetchall() == _ALL_ROWS[1:]  # its own snapshot, before the update
        else:
            cur.close()
            run_remote(conn, _ALL)  # the worker's next request comes after the drop
        assert truncate_checkpoint_busy() == 0


def test_changed_functions_and_pragmas_reach_the_worker(conn):
    conn.create_function("f", 1, lambda v: "old")
    sql = "select f(x), 'abc' like 'ABC' from big"
    mark_heavy(conn, sql)
    assert set(run_remote(conn, sql)) == {("old", 1)}
    pending = conn.execute(sql)  # keeps a worker, with rows of the old settings
    assert pending.fetchone() == ("old", 1)
    with pytest.raises(sqlite3.OperationalError, match="Error creating function"):
        conn.create_function("f", 1, lambda v: "new")  # as sqlite3, while a read is pending
    assert set(pending.fetchall()) == {("old", 1)}
    conn.create_function("f", 1, lambda v: "new")
    conn.execute("pragma case_sensitive_like = on")
    assert set(run_remote(conn, sql)) == {("new", 0)}


def test_attach_detach_and_attach_again(conn, tmp_path):
    aux = tmp_path / "aux.db"
    with closing(sqlite3.connect(aux)) as plain:
        plain.execute("create table a(v)")
        plain.executemany("insert into a values (?)", [(i,) for i in range(BIG)])
        plain.commit()
    conn.execute("attach database ? as aux", (str(aux),))
    sql = "select v from aux.a"
    assert len(offload(conn, sql)) == BIG
    conn.execute("detach database aux")
    with pytest.raises(sqlite3.OperationalError, match="no such table: aux.a"):
        conn.execute(sql)
    conn.execute("attach database ? as aux", (str(aux),))
    assert len(run_remote(conn, sql)) == BIG


def _attachments_on_a_worker(conn) -> set[tuple[str, str]]:
    """``(schema, file name)`` of each database a worker standing in for ``conn`` has."""
    sql = ("select d.name, d.file from pragma_database_list d, big b "
           "where b.x < 1000 order by d.seq, b.x")  # 1000 rows a database: heavy
    rows = run_remote(conn, sql)
    return {(name, os.path.basename(file)) for name, file in rows}


def test_a_worker_replays_the_attachments_there_are_not_their_history(conn, tmp_path):
    files = [tmp_path / f"tenant{i}.db" for i in range(3)]
    for f in files:
        sqlite3.connect(f).close()
    mark_heavy(conn, "select d.name, d.file from pragma_database_list d, big b "
                     "where b.x < 1000 order by d.seq, b.x")
    for n in range(300):  # as an application that attaches a tenant's file per request
        conn.execute("attach database ? as tenant", (str(files[n % 3]),))
        conn.execute("detach database tenant")
    conn.execute("attach database ? as \"Tenant\"", (str(files[1]),))
    conn.execute("attach database ? as other", (str(files[2]),))
    conn.execute("pragma main.cache_size = 200")
    conn.execute("pragma other.cache_size = 100")
    assert _attachments_on_a_worker(conn) == {
        ("main", os.path.basename(conn._connect[0])), ("other", "tenant2.db"),
        ("Tenant", "tenant1.db")}
    assert len(conn._replay) == 4  # two attachments and two pragmas: no history
    conn.execute("detach database TENANT")  # schema names ignore case, as in SQLite
    assert _attachments_on_a_worker(conn) == {
        ("main", os.path.basename(conn._connect[0])), ("other", "tenant2.db")}
    cache = "select c.cache_size from pragma_cache_size c, big b where b.x < 1000"
    mark_heavy(conn, cache)
    assert set(run_remote(conn, cache)) == {(200,)}  # main's, not lost to other's, set after it


def test_the_worker_sees_schema_changes(conn):
    mark_heavy(conn, "select * from big")
    assert run_remote(conn, "select * from big")[0] == (0, "s0")
    conn.execute("alter table big add column extra default 'e'")
    conn.commit()
    cur = conn.execute("select * from big")
    assert [d[0] for d in cur.description] == ["x", "s", "extra"]
    assert cur.fetchone() == (0, "s0", "e")
    assert offloaded(conn) == 2


def test_temp_objects_keep_reads_in_the_caller_until_dropped(conn):
    mark_heavy(conn, _ALL)
    conn.execute("create temp table keep(x)")
    conn.execute("insert into keep values (1)")
    conn.commit()
    before = offloaded(conn)
    assert conn.execute(_ALL).fetchall() == _ALL_ROWS
    joined = "select big.x from big join keep on keep.x <= big.x"
    assert len(conn.execute(joined).fetchall()) == BIG - 1
    assert len(conn.execute(joined).fetchall()) == BIG - 1
    assert offloaded(conn) == before
    conn.execute("drop table keep")
    assert run_remote(conn, _ALL) == _ALL_ROWS


def test_an_in_memory_attachment_keeps_reads_in_the_caller(conn):
    mark_heavy(conn, _ALL)
    conn.execute("attach database ':memory:' as m")
    for _ in range(2):
        assert conn.execute(_ALL).fetchall() == _ALL_ROWS
    assert offloaded(conn) == 0


@pytest.mark.parametrize("callback", ["trace", "progress"])
def test_callbacks_keep_reads_in_the_caller_where_they_see_them(conn, callback):
    calls: list = []
    if callback == "trace":
        conn.set_trace_callback(calls.append)
    else:
        conn.set_progress_handler(lambda: calls.append(1) and 0, 100)
    for _ in range(2):
        calls.clear()
        assert conn.execute(_ALL).fetchall() == _ALL_ROWS
        assert calls  # the callback saw the read, both times
    assert offloaded(conn) == 0


def test_an_authorizer_keeps_denying_heavy_reads(conn):
    def deny_s(action, table, column, *_):
        return sqlite3.SQLITE_DENY if (table, column) == ("big", "s") else sqlite3.SQLITE_OK

    assert conn.execute(_ALL).fetchall() == _ALL_ROWS  # heavy now
    conn.set_authorizer(deny_s)
    for sql in (_ALL, _ALL + " "):  # cached and freshly prepared
        with pytest.raises(sqlite3.DatabaseError, match="prohibited"):
            conn.execute(sql).fetchall()
    assert offloaded(conn) == 0


@pytest.mark.filterwarnings("ignore:The default date converter is deprecated:DeprecationWarning")
def test_converters_keep_reads_in_the_caller(mp_connect):
    conn = mp_connect(detect_types=sqlite3.PARSE_DECLTYPES)
    conn.execute("create table d(day date)")
    conn.executemany("insert into d values (?)", [("2024-01-02",)] * BIG)
    conn.commit()
    import datetime

    for _ in range(2):
        rows = conn.execute("select day from d").fetchall()
        assert rows[0] == (datetime.date(2024, 1, 2),) and len(rows) == BIG
    assert offloaded(conn) == 0


def test_another_text_factory_keeps_reads_in_the_caller(conn):
    conn.text_factory = bytes
    for _ in range(2):
        assert conn.execute(_ALL).fetchall()[3] == (3, b"s3")
    assert offloaded(conn) == 0


def test_adapted_parameters_keep_a_heavy_read_in_the_caller(conn):
    class Threshold:
        def __init__(self, value: int) -> None:
            self.value = value

    sqlite3.register_adapter(Threshold, lambda t: t.value)
    try:
        sql = "select x from big where x >= ?"
        mark_heavy(conn, sql, (0,))
        before = offloaded(conn)
        assert len(conn.execute(sql, (Threshold(10),)).fetchall()) == BIG - 10
        assert offloaded(conn) == before
        assert len(run_remote(conn, sql, (10,))) == BIG - 10
    finally:
        del sqlite3.adapters[(Threshold, sqlite3.PrepareProtocol)]


def test_offload_false_never_moves(mp_connect):
    conn = mp_connect(offload=False)
    fill_big(conn)
    for _ in range(3):
        assert conn.execute(_ALL).fetchall() == _ALL_ROWS
    assert offloaded(conn) == 0 and conn.pool_status()["workers"] == []


def test_a_functions_side_effects_stay_in_the_caller_until_it_proves_heavy(conn, mp_connect):
    """The documented difference: a function's side effects happen in the caller while its
    statement runs here, which it does until it has proven heavy; then in a worker.
    ``offload=False`` keeps them here always."""
    calls: list[int] = []
    burn = burner()
    conn.create_function("note", 1, lambda v: calls.append(v) or burn(v))
    for i in range(3):
        assert conn.execute("select note(?)", (i,)).fetchone() == (i,)
    assert calls == [0]  # judged heavy by its first run; the next two ran on a worker
    assert conn.pool_status()["offloaded_statements"] == 2
    local = mp_connect(offload=False)
    kept: list[int] = []
    local.create_function("note", 1, lambda v: kept.append(v) or burn(v))
    for i in range(3):
        assert local.execute("select note(?)", (i,)).fetchone() == (i,)
    assert kept == [0, 1, 2]


_APP_MODULE = '''
import time

def heavy(value):
    start = time.thread_time()
    while time.thread_time() - start < 0.006:
        pass
    return value
'''

_APP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import mpsqlite
    import appfuncs  # the application's own module, next to it

    conn = mpsqlite.connect(sys.argv[1])
    conn.create_function("heavy", 1, appfuncs.heavy)
    results = [conn.execute("select heavy(?)", (i,)).fetchone()[0] for i in range(3)]
    status = conn.pool_status()
    print(json.dumps([results, status["offloaded_statements"], status["restarts"]]))
    conn.close()
    """
)


def test_a_function_from_the_applications_own_module_reaches_the_workers(tmp_path):
    """An application run from its directory registers a function of its own module; the
    workers must be able to replay it (they may put that directory after the stdlib)."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "appfuncs.py").write_text(_APP_MODULE)
    (app / "main.py").write_text(_APP_SCRIPT)
    out = subprocess.run(
        [sys.executable, "main.py", str(tmp_path / "app.db")],
        cwd=app, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    results, offloaded_count, restarts = json.loads(out.stdout)
    assert results == [0, 1, 2]
    assert (offloaded_count, restarts) == (2, 0)


def test_executescript_leaves_a_remote_result_to_be_read_as_sqlite3(conn):
    mark_heavy(conn, _ALL)
    cur = conn.execute(_ALL)
    assert cur.fetchone() == (0, "s0") and offloaded(conn) == 1
    cur.executescript("create table other(x);")  # sqlite3 keeps the cursor's result
    assert cur.fetchall() == _ALL_ROWS[1:]


def test_a_read_that_fails_on_a_worker_leaves_no_description(conn, mp_connect):
    mark_heavy(conn, _ALL)
    cur = conn.execute("select 1 as one")
    other = mp_connect()
    other.execute("drop table big")
    other.commit()
    with pytest.raises(sqlite3.OperationalError, match="no such table: big"):
        cur.execute(_ALL)
    assert cur.description is None  # as after sqlite3's failed execute


def test_a_read_that_fails_on_a_worker_leaves_no_reference_cycle(conn, mp_connect):
    """The error travels without a cycle through mpsqlite's frames: the cursor goes as
    soon as it is dropped (a cursor kept alive would keep a closed connection open,
    write lock included, until the garbage collector ran)."""
    mark_heavy(conn, _ALL)
    other = mp_connect()
    other.execute("drop table big")
    other.commit()
    cur = conn.cursor()
    gc.disable()
    try:
        try:
            cur.execute(_ALL)
        except sqlite3.OperationalError as exc:
            assert "no such table: big" in str(exc)
        else:
            pytest.fail("the read did not fail")
        gone = weakref.ref(cur)
        del cur
        assert gone() is None
    finally:
        gc.enable()

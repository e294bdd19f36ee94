"""Regression tests for twelve defects of the process-pool design (old main, 2ce5d26).

One test per defect (some with a parameter per case of it). Each failed on
old main and passes on the redesigned core; only connect() arguments both
designs accept are used, so that a failure on old main is the defect itself.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from contextlib import closing
from pathlib import Path

import pytest

import mpsqlite
from tests.core._heavy import BIG, fill_big
from tests.core._procs import child_pids

pytestmark = pytest.mark.timeout(120)


def _plain_rows(path, sql="select v from t order by rowid"):
    with closing(sqlite3.connect(str(path))) as plain:
        return plain.execute(sql).fetchall()


def _heavy_read_twice(conn, sql="select x, s from big"):
    """Run a read that returns BIG rows twice: on the new design the second run is offloaded."""
    first = conn.execute(sql).fetchall()
    second = conn.execute(sql).fetchall()
    assert len(first) == BIG and second == first
    return second


# 1 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["insert into nosuch values (1)", "insert into t valuez (1)"])
def test_1_dml_failing_at_prepare_leaves_no_transaction_and_no_gate(db_path, bad):
    setup = sqlite3.connect(db_path)
    setup.execute("create table t(x)")
    setup.commit()
    setup.close()
    with closing(mpsqlite.connect(db_path, workers=2)) as a, closing(
        sqlite3.connect(":memory:")
    ) as reference, closing(mpsqlite.connect(db_path, workers=2, timeout=0.5)) as b:
        reference.execute("create table t(x)")
        with pytest.raises(sqlite3.OperationalError) as expected:
            reference.execute(bad)
        with pytest.raises(sqlite3.OperationalError) as got:
            a.execute(bad)
        assert str(got.value) == str(expected.value)
        assert a.in_transaction is reference.in_transaction is False
        b.execute("insert into t values (2)")  # at once: no 'database is locked'
        b.commit()
        a.execute("insert into t values (1)")  # and a itself still writes normally
        a.commit()
    assert sorted(_plain_rows(db_path, "select x from t")) == [(1,), (2,)]


# 2 ---------------------------------------------------------------------------------------


def _make_plain_db(path: Path, value: str) -> None:
    with closing(sqlite3.connect(path)) as plain:
        plain.execute("create table t(v)")
        plain.execute("insert into t values (?)", (value,))
        plain.execute("create table big(x integer primary key, s text)")
        plain.executemany("insert into big values (?, ?)", ((i, value) for i in range(BIG)))
        plain.commit()


def _remove_db(path: Path) -> None:
    """Delete a database and its WAL sidecar files, as a WAL-mode file must be deleted."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.unlink(f"{path}{suffix}")


@pytest.mark.parametrize(
    ("how", "when"),
    [
        ("delete-and-recreate", "while-a-connection-lives"),
        ("os.replace", "while-a-connection-lives"),
        ("delete-and-recreate", "after-last-close-while-workers-linger"),
        ("os.replace", "after-last-close-while-workers-linger"),
    ],
)
def test_2_a_replaced_database_file_is_a_new_database(tmp_path, db_path, how, when):
    old = mpsqlite.connect(db_path, workers=2)
    old.execute("create table t(v)")
    old.execute("insert into t values ('old')")
    old.commit()
    fill_big(old)
    _heavy_read_twice(old)  # the new design starts a worker here
    if when != "while-a-connection-lives":
        old.close()
        old = None
    # In WAL mode the -wal and -shm files belong to the file being replaced; SQLite
    # would read the old WAL into the new file (plain sqlite3 does too), so they go.
    if how == "delete-and-recreate":
        _remove_db(db_path)
        _make_plain_db(db_path, "new")
    else:
        _make_plain_db(tmp_path / "replacement.db", "new")
        for suffix in ("-wal", "-shm"):
            if os.path.exists(f"{db_path}{suffix}"):
                os.unlink(f"{db_path}{suffix}")
        os.replace(tmp_path / "replacement.db", db_path)
    new = mpsqlite.connect(db_path, workers=2)
    try:
        assert new.execute("select v from t").fetchall() == [("new",)]
        assert {s for _, s in _heavy_read_twice(new)} == {"new"}
        new.execute("insert into t values ('written-after')")
        new.commit()
        assert _plain_rows(db_path) == [("new",), ("written-after",)]
    finally:
        new.close()
        if old is not None:
            old.close()


# 3 ---------------------------------------------------------------------------------------


def test_3_table_rebuild_pattern_works_every_time(tmp_path):
    """create new, copy, DROP TABLE t, ALTER TABLE t__tmp__ RENAME TO t: 10 of 10 times,
    statement by statement in autocommit mode and as one transaction in sqlite3's default."""
    for isolation_level in (None, ""):
        path = tmp_path / f"rebuild-{isolation_level is None}.db"
        with closing(mpsqlite.connect(path, workers=2, isolation_level=isolation_level)) as conn, \
                closing(mpsqlite.connect(path, workers=2)) as reader:
            conn.execute("create table t(id integer primary key, v text)")
            conn.executemany("insert into t(v) values (?)", [("a",), ("b",)])
            conn.commit()
            for i in range(10):
                conn.execute(f"create table t__tmp__(id integer primary key, v text, c{i} int)")
                conn.execute("insert into t__tmp__(id, v) select id, v from t")
                conn.execute("DROP TABLE t")
                conn.execute("ALTER TABLE t__tmp__ RENAME TO t")
                conn.commit()
                assert conn.execute("select v from t order by id").fetchall() == [("a",), ("b",)]
                assert reader.execute("select * from t order by id").fetchall() == [
                    (1, "a", None), (2, "b", None)]
                columns = [d[0] for d in reader.execute("select * from t").description]
                assert columns == ["id", "v", f"c{i}"]
        assert _plain_rows(path) == [("a",), ("b",)]


# 4 ---------------------------------------------------------------------------------------


def test_4_connection_settings_stay_with_their_connection(tmp_path, db_path):
    aux = tmp_path / "aux.db"
    _make_plain_db(aux, "aux")
    first = mpsqlite.connect(db_path, workers=2)
    first.execute("pragma foreign_keys = on")
    first.execute("attach database ? as aux", (str(aux),))
    assert first.execute("pragma foreign_keys").fetchone() == (1,)
    assert first.execute("select v from aux.t").fetchall() == [("aux",)]
    later = mpsqlite.connect(db_path, workers=2)
    try:
        assert later.execute("pragma foreign_keys").fetchone() == (0,)
        assert [row[1] for row in later.execute("pragma database_list")] == ["main"]
        with pytest.raises(sqlite3.OperationalError, match="no such table: aux.t"):
            later.execute("select v from aux.t")
        # an in-memory attachment and a TEMP table work, each on its own connection
        later.execute("attach database ':memory:' as m")
        later.execute("create table m.x(v)")
        later.execute("insert into m.x values ('in memory')")
        assert later.execute("select v from m.x").fetchall() == [("in memory",)]
        later.execute("create temp table tt(v)")
        later.execute("insert into tt values ('temp')")
        assert later.execute("select v from tt").fetchall() == [("temp",)]
        later.commit()
        with pytest.raises(sqlite3.OperationalError, match="no such table: tt"):
            first.execute("select v from tt")
    finally:
        later.close()
        first.close()


# 5 ---------------------------------------------------------------------------------------


def _compat_case_comment_dml(conn):
    conn.execute("/* c */ insert into t values (1)")
    opened = conn.in_transaction
    conn.rollback()
    return opened, conn.execute("select count(*) from t").fetchone()


def _compat_case_executemany_bad_third_row(conn):
    try:
        conn.executemany("insert into t values (?)", [(1,), (2,), (1,)])
    except sqlite3.Error as exc:
        error = (type(exc).__name__, str(exc))
    else:
        error = None
    rows = conn.execute("select x from t order by x").fetchall()
    changes = conn.total_changes
    conn.commit()
    return error, rows, changes, _plain_rows_of(conn)


def _plain_rows_of(conn):
    path = conn.execute("pragma database_list").fetchone()[2]
    with closing(sqlite3.connect(path)) as plain:
        return plain.execute("select x from t order by x").fetchall()


def _compat_case_reentrant_parameters(conn):
    cur = conn.cursor()

    def params():
        yield (1,)
        cur.execute("select 1")
        yield (2,)

    try:
        cur.executemany("insert into t values (?)", params())
    except sqlite3.Error as exc:
        return type(exc).__name__, str(exc)
    return None


def _compat_case_executescript_rowcount(conn):
    cur = conn.cursor()
    cur.execute("insert into t values (10)")
    before = cur.rowcount
    cur.executescript("insert into t values (11); insert into t values (12);")
    return before, cur.rowcount, conn.total_changes, conn.in_transaction


@pytest.mark.parametrize(
    "case",
    [
        _compat_case_comment_dml,
        _compat_case_executemany_bad_third_row,
        _compat_case_reentrant_parameters,
        _compat_case_executescript_rowcount,
    ],
    ids=lambda f: f.__name__.removeprefix("_compat_case_"),
)
def test_5_statement_rules_match_sqlite3(tmp_path, case):
    """The same body on sqlite3 and on mpsqlite gives the same observations."""
    results = []
    for module in (sqlite3, mpsqlite):
        path = tmp_path / f"{module.__name__}.db"
        kwargs = {"workers": 2} if module is mpsqlite else {}
        with closing(module.connect(str(path), **kwargs)) as conn:
            conn.execute("create table t(x integer primary key)")
            conn.commit()
            results.append(case(conn))
    assert results[1] == results[0]


def test_5_statements_that_write_nothing_do_not_wait_for_the_writer(db_path):
    """Blank and comment-only statements, reads, commit()/rollback() with nothing to end and
    a with block that only read: none waits while another connection holds the writer."""
    holder = mpsqlite.connect(db_path, workers=2)
    holder.execute("create table t(x)")
    holder.commit()
    holder.execute("insert into t values (1)")  # holds the writer until the end
    other = mpsqlite.connect(db_path, workers=2, timeout=0.5)
    try:
        for sql in ["", "   ", "-- only a comment", "/* a comment */", ";", "  ;  ",
                    "-- a\n/* b */ ;", "select count(*) from t"]:
            assert other.execute(sql).fetchall() in ([], [(0,)])
            assert not other.in_transaction
        other.commit()
        other.rollback()
        with other:
            assert other.execute("select count(*) from t").fetchone() == (0,)
        assert not other.in_transaction
    finally:
        other.close()
        holder.rollback()
        holder.close()


def test_5_a_transaction_that_only_reads_does_not_wait_for_the_writer(db_path):
    """BEGIN; SELECT; COMMIT while another connection writes: sqlite3 does not wait."""
    outcomes = []
    for module in (sqlite3, mpsqlite):
        path = Path(f"{db_path}.{module.__name__}")
        with closing(sqlite3.connect(path)) as setup:
            setup.execute("pragma journal_mode = wal")
            setup.execute("create table t(x)")
            setup.commit()
        holder = module.connect(str(path), isolation_level=None)
        holder.execute("begin immediate")
        holder.execute("insert into t values (1)")
        reader = module.connect(str(path), timeout=0.5, isolation_level=None)
        try:
            reader.execute("begin")
            rows = reader.execute("select count(*) from t").fetchall()
            reader.execute("commit")
            outcomes.append(("ok", rows))
        except sqlite3.Error as exc:
            outcomes.append((type(exc).__name__, str(exc)))
        finally:
            reader.close()
            holder.execute("rollback")
            holder.close()
    assert outcomes[0] == ("ok", [(0,)])
    assert outcomes[1] == outcomes[0]


# 6 ---------------------------------------------------------------------------------------


def test_6_trace_callback_and_function_side_effects_happen_in_the_caller(tmp_path):
    traces = []
    for module in (sqlite3, mpsqlite):
        seen: list[str] = []
        kwargs = {"workers": 2} if module is mpsqlite else {}
        with closing(module.connect(str(tmp_path / f"{module.__name__}.db"), **kwargs)) as conn:
            conn.set_trace_callback(seen.append)
            conn.execute("create table t(x)")
            conn.execute("insert into t values (?)", (1,))
            conn.commit()
            conn.execute("select x from t").fetchall()
            conn.set_trace_callback(None)
            calls: list[int] = []
            conn.create_function("note", 1, lambda v, calls=calls: calls.append(v) or v)
            for _ in range(3):
                assert conn.execute("select note(5)").fetchone() == (5,)
            assert calls == [5, 5, 5]
        traces.append(seen)
    assert traces[0]  # sqlite3 saw the statements
    assert traces[1] == traces[0]


# 7 ---------------------------------------------------------------------------------------


def test_7_a_second_connect_with_other_options_gets_them(db_path):
    first = mpsqlite.connect(db_path, workers=1, timeout=60)
    first.execute("create table t(x)")
    first.commit()
    second = mpsqlite.connect(db_path, workers=3, timeout=0.2, check_same_thread=False)
    try:
        assert second.pool_status()["size"] == 3
        assert first.pool_status()["size"] == 3  # one database, one pool size
        first.execute("insert into t values (1)")  # holds the writer
        outcome: list = []

        def write():
            try:
                second.execute("insert into t values (2)")
                outcome.append("no error")
            except sqlite3.OperationalError as exc:
                outcome.append(str(exc))

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        thread.join(30)  # the second's own 0.2 s, not the first's 60 s
        assert not thread.is_alive(), "the second connection waited with the first's timeout"
        assert outcome == ["database is locked"]
    finally:
        first.rollback()
        second.close()
        first.close()


# 8 ---------------------------------------------------------------------------------------


#: Files a mis-decoded name could reach instead: '%41' read as 'A', '?'/'#' as a query.
_DECOYS = ["aA.db", "a", "a%3Fb%23c.db", "a?b"]


@pytest.mark.parametrize("form", ["percent-in-path", "escaped-uri"])
def test_8_odd_file_names_reach_exactly_that_file(tmp_path, form):
    if form == "percent-in-path":
        name = "a%41.db"
        target, uri = str(tmp_path / name), False
    else:
        name = "a?b#c.db"
        target = f"file:{urllib.parse.quote(str(tmp_path))}/a%3Fb%23c.db?mode=rwc"
        uri = True
    for decoy in _DECOYS:
        _make_plain_db(tmp_path / decoy, "decoy")
    conn = mpsqlite.connect(target, uri=uri, workers=2)
    try:
        conn.execute("create table t2(v)")
        conn.execute("insert into t2 values ('here')")
        conn.commit()
        assert conn.execute("select v from t2").fetchall() == [("here",)]
        fill_big(conn)
        assert {s for _, s in _heavy_read_twice(conn)} == {f"s{i}" for i in range(BIG)}
        with closing(mpsqlite.connect(target, uri=uri, workers=2)) as second:
            assert second.execute("select v from t2").fetchall() == [("here",)]
            assert len(second.execute("select x from big").fetchall()) == BIG
    finally:
        conn.close()
    assert _plain_rows(tmp_path / name, "select v from t2") == [("here",)]
    for decoy in _DECOYS:  # untouched
        assert _plain_rows(tmp_path / decoy) == [("decoy",)]
    names = {p.name for p in tmp_path.iterdir()} - {f"{name}-wal", f"{name}-shm"}
    assert names == {name, *_DECOYS}


# 9 ---------------------------------------------------------------------------------------

_FAKE_SIGNAL = '''
import os
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imported-by-%d" % os.getpid()),
          "w"):
    pass
from _signal import *  # noqa: F401,F403 - stand in for the real module
'''


def test_9_workers_do_not_import_modules_from_the_current_directory(tmp_path, monkeypatch):
    trap = tmp_path / "cwd"
    trap.mkdir()
    (trap / "signal.py").write_text(_FAKE_SIGNAL)
    before = child_pids()
    monkeypatch.chdir(trap)
    conn = mpsqlite.connect(str(tmp_path / "app.db"), workers=1)
    try:
        fill_big(conn)
        _heavy_read_twice(conn)
        workers = {w["pid"] for w in conn.pool_status()["workers"]}
    finally:
        conn.close()
        mpsqlite.shutdown()
    assert sorted(p.name for p in trap.iterdir()) == ["signal.py"]
    assert workers and workers.isdisjoint(before)  # a worker process did run


# 10 --------------------------------------------------------------------------------------


def test_10_connect_close_cycles_do_not_pile_up_threads(db_path):
    with closing(mpsqlite.connect(db_path, workers=2)) as conn:
        conn.execute("create table t(x)")
        conn.commit()
    start = threading.active_count()
    for _ in range(2000):
        conn = mpsqlite.connect(db_path, workers=2)
        conn.execute("select count(*) from t").fetchone()
        conn.close()
    assert threading.active_count() <= start + 3


# 11 --------------------------------------------------------------------------------------


def test_11_after_close_and_shutdown_no_sidecar_files_remain(tmp_path, db_path):
    conn = mpsqlite.connect(db_path, workers=2)
    reader = mpsqlite.connect(db_path, workers=2)
    fill_big(conn)
    _heavy_read_twice(reader)
    reader.close()
    conn.close()
    mpsqlite.shutdown()
    assert sorted(p.name for p in tmp_path.iterdir()) == [db_path.name]
    db_path.unlink()
    again = mpsqlite.connect(db_path, workers=2)
    try:
        again.execute("create table t(v)")
        again.execute("insert into t values ('fresh')")
        again.commit()
        assert again.execute("select v from t").fetchall() == [("fresh",)]
    finally:
        again.close()
    assert _plain_rows(db_path) == [("fresh",)]


# 12 --------------------------------------------------------------------------------------


def test_12_cheap_statements_start_no_worker_process(db_path):
    before = child_pids()
    conn = mpsqlite.connect(db_path, workers=2)
    conn.execute("create table t(x)")
    conn.executemany("insert into t values (?)", [(i,) for i in range(100)])
    conn.commit()
    assert conn.execute("select count(*), sum(x) from t").fetchone() == (100, 4950)
    assert len(conn.execute("select x from t").fetchall()) == 100
    started = child_pids() - before
    workers = conn.pool_status()["workers"]
    conn.close()
    assert started == set()
    assert workers == []

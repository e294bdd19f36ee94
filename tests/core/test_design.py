"""mpsqlite's own mechanisms: routing, local reads, group commit, the writer gate."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time

import pytest

import mpsqlite
from mpsqlite import registry
from mpsqlite.classify import Kind, classify, is_dml, pragma_assignment


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("select 1", Kind.READ),
        ("  -- comment\n SELECT * from t", Kind.READ),
        ("/* c */ values (1)", Kind.READ),
        ("with x as (select 1) select * from x", Kind.READ),
        ("with x as (select 1) insert into t select * from x", Kind.WRITE),
        ("with x as (select 'insert') select * from x", Kind.READ),
        ("insert into t values (1)", Kind.WRITE),
        ("create table t(x)", Kind.WRITE),
        ("begin immediate", Kind.BEGIN),
        ("savepoint a", Kind.BEGIN),
        ("commit", Kind.END),
        ("end transaction", Kind.END),
        ("rollback", Kind.END),
        ("rollback to a", Kind.WRITE),
        ("rollback transaction to savepoint a", Kind.WRITE),
        ("pragma table_info(t)", Kind.READ),
        ("pragma journal_mode", Kind.READ),
        ("pragma journal_mode=wal", Kind.WRITE),
        ("pragma user_version = 3", Kind.WRITE),
        ("pragma foreign_keys = on", Kind.CONFIG),
        ("PRAGMA main.cache_size=-4000", Kind.CONFIG),
        ("attach database 'x.db' as x", Kind.CONFIG),
        ("vacuum", Kind.WRITE),
    ],
)
def test_classify(sql, kind):
    assert classify(sql) is kind


def test_is_dml_mirrors_sqlite3_rule():
    assert is_dml("  insert into t values (1)")
    assert is_dml("REPLACE into t values (1)")
    assert not is_dml("-- c\ninsert into t values (1)")  # sqlite3 does not skip comments
    assert not is_dml("with x as (select 1) insert into t select * from x")


def test_pragma_assignment():
    assert pragma_assignment("PRAGMA synchronous = FULL") == ("synchronous", "full")
    assert pragma_assignment("pragma main.synchronous=2") == ("synchronous", "2")
    assert pragma_assignment("pragma synchronous") is None


@pytest.fixture
def con(tmp_path):
    c = mpsqlite.connect(tmp_path / "d.db", workers=2)
    c.execute("create table t(id integer primary key, v text)")
    c.executemany("insert into t(v) values (?)", [(str(i),) for i in range(1000)])
    c.commit()
    yield c
    c.close()


def test_cheap_reads_run_locally_and_see_commits(con):
    before = con.pool_status()["local_statements"]
    for i in range(1, 50):
        assert con.execute("select v from t where id = ?", (i,)).fetchone() == (str(i - 1),)
    assert con.pool_status()["local_statements"] - before == 49
    other = mpsqlite.connect(con._pool.database, workers=2)
    other.execute("update t set v = 'new' where id = 1")
    assert con.execute("select v from t where id = 1").fetchone() == ("0",)  # not committed
    other.commit()
    assert con.execute("select v from t where id = 1").fetchone() == ("new",)
    other.close()


def test_large_results_go_to_the_workers(con):
    rows = con.execute("select * from t").fetchall()
    assert len(rows) == 1000
    assert "select * from t" in con._pool.local.heavy
    statements = con.pool_status()["statements"]
    assert len(con.execute("select * from t").fetchall()) == 1000
    assert con.pool_status()["statements"] > statements


def test_a_read_that_grows_past_one_reply_moves_and_releases_its_snapshot(con):
    sql = "select * from t where id <= ?"
    for _ in range(3):  # small results: local, on the thread's reused cursor
        assert len(con.execute(sql, (10,)).fetchall()) == 10
    local = con.pool_status()["local_statements"]
    assert len(con.execute(sql, (900,)).fetchall()) == 900
    assert sql in con._pool.local.heavy
    assert con.pool_status()["local_statements"] == local
    # The abandoned local statement must not keep a read snapshot open: a
    # TRUNCATE checkpoint succeeds only when no reader holds the WAL.
    con.execute("update t set v = 'x' where id = 1")
    con.commit()
    assert con.execute("pragma wal_checkpoint(truncate)").fetchone()[0] == 0
    assert con.execute("select v from t where id = ?", (1,)).fetchone() == ("x",)


def test_a_read_started_inside_another_local_read_gets_its_own_cursor(tmp_path):
    path = tmp_path / "conv.db"
    con = mpsqlite.connect(path, workers=1, detect_types=sqlite3.PARSE_DECLTYPES)
    con.execute("create table names(id integer primary key, name text)")
    con.execute("create table r(ref nameref)")
    con.executemany("insert into names values (?, ?)", [(1, "one"), (2, "two")])
    con.executemany("insert into r values (?)", [(1,), (2,)])
    con.commit()

    holder: dict = {}  # empty while the converter is pickled for the workers

    def lookup(raw: bytes) -> str:
        # Runs inside the outer statement's fetch, on the same thread.
        inner = holder["con"].execute("select name from names where id = ?", (int(raw),))
        return inner.fetchone()[0]

    mpsqlite.register_converter("nameref", lookup)
    holder["con"] = con
    try:
        for _ in range(3):
            assert con.execute("select ref from r order by ref").fetchall() == [
                ("one",), ("two",)]
    finally:
        holder.clear()
        del sqlite3.converters["NAMEREF"]
        registry._converters.pop("NAMEREF")
        con.close()


def _parent_pid(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_converters_travel_only_to_pools_that_convert(tmp_path):
    lock = threading.Lock()
    sqlite3.register_converter("locked", lambda raw, _lock=lock: raw)  # cannot be pickled
    try:
        plain = mpsqlite.connect(tmp_path / "a.db", workers=1)
        plain.execute("create table t(x locked)")
        plain.execute("insert into t values ('v')")
        plain.commit()
        assert plain.execute("select x from t").fetchall() == [("v",)]
        plain.close()
        before = set(os.listdir("/proc")) if os.path.isdir("/proc") else set()
        unpicklable = r"converter \('LOCKED'.* cannot be sent"
        with pytest.raises(sqlite3.ProgrammingError, match=unpicklable):
            mpsqlite.connect(tmp_path / "b.db", workers=1, detect_types=sqlite3.PARSE_DECLTYPES)
        started = {p for p in set(os.listdir("/proc")) - before if p.isdigit()}
        assert [p for p in started if _parent_pid(p) == os.getpid()] == []  # no worker left
    finally:
        del sqlite3.converters["LOCKED"]


def test_settings_made_while_a_worker_holds_open_results_reach_it(tmp_path):
    path = tmp_path / "s.db"
    holder = mpsqlite.connect(path, workers=2, local_reads=False)
    holder.create_function("f", 1, lambda x: "old")
    holder.execute("create table big(x)")
    holder.executemany("insert into big values (?)", [(i,) for i in range(2000)])
    holder.commit()
    cur = holder.execute("select f(x) from big")  # stays open on one worker
    assert cur.fetchone() == ("old",)
    other = mpsqlite.connect(path, workers=2, local_reads=False)
    other.create_function("f", 1, lambda x: "new")  # SQLite refuses while statements run
    other.execute("pragma case_sensitive_like = on")
    rest = cur.fetchall()  # an unrelated fetch must not fail on the pending settings
    assert len(rest) == 1999
    answers = set()
    for _ in range(6):  # both workers, by turns and inside transactions
        holder.execute("begin")
        answers.add(holder.execute("select f(1), 'abc' like 'ABC'").fetchone())
        holder.rollback()
        answers.add(other.execute("select f(1), 'abc' like 'ABC'").fetchone())
    assert answers == {("new", 0)}
    holder.close()
    other.close()


def test_attach_detach_and_attach_again_with_parameters(tmp_path):
    aux = tmp_path / "aux.db"
    plain = sqlite3.connect(aux)
    plain.execute("create table a(v)")
    plain.execute("insert into a values ('x')")
    plain.commit()
    plain.close()
    con = mpsqlite.connect(tmp_path / "main.db", workers=2, local_reads=False)
    con.execute("attach database ? as aux", (str(aux),))
    for _ in range(2):
        con.execute("begin")  # a transaction pins one worker: try both
        assert con.execute("select v from aux.a").fetchall() == [("x",)]
        con.rollback()
    con.execute("detach database aux")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        con.execute("select v from aux.a")
    con.execute("attach database ? as aux", (str(aux),))
    for _ in range(4):
        assert con.execute("select v from aux.a").fetchall() == [("x",)]
    con.close()


def test_many_distinct_statements_keep_memory_bounded(con):
    for i in range(1, 5001):
        assert con.execute(f"select {i}, count(*) from t where id = {i % 1000 + 1}").fetchone() == (
            i, 1)
    assert len(con._pool.local._plain) <= 4097


def test_expensive_reads_go_to_the_workers(con):
    con.create_function("slow", 1, lambda x: sum(range(20000)) and x)
    sql = "select slow(v) from t where id < 20"
    for _ in range(10):
        assert len(con.execute(sql).fetchall()) == 19
    assert sql in con._pool.local.heavy


def test_reads_in_a_transaction_see_own_writes_and_stay_on_one_worker(con):
    con.create_function("pid", 0, os.getpid)
    con.execute("update t set v = 'mine' where id = 2")
    pids = {con.execute("select pid(), v from t where id = 2").fetchone() for _ in range(20)}
    assert len(pids) == 1 and next(iter(pids))[1] == "mine"
    con.rollback()
    assert con.execute("select v from t where id = 2").fetchone() == ("1",)


def test_group_commit_shares_fsyncs_between_writers(tmp_path):
    path = tmp_path / "g.db"
    setup = mpsqlite.connect(path, workers=2)
    setup.execute("create table w(id integer primary key, v text)")
    setup.execute("pragma synchronous = FULL")
    errors = []

    def writer():
        c = mpsqlite.connect(path, workers=2)
        try:
            for _ in range(40):
                c.execute("insert into w(v) values ('x')")
                c.commit()
        except sqlite3.Error as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status = setup.pool_status()
    assert errors == []
    assert sqlite3.connect(path).execute("select count(*) from w").fetchone() == (240,)
    assert status["commits"] >= 240
    assert 0 < status["fsyncs"] <= status["commits"]
    # The workers themselves never fsync per commit; the connection reports
    # the durability it gives.
    assert setup.execute("pragma synchronous").fetchone() == (2,)
    assert setup._pool.local is not None
    assert setup._pool.setup[0][2] == "PRAGMA synchronous=NORMAL"
    setup.close()


def test_synchronous_off_skips_the_group_fsync(tmp_path):
    c = mpsqlite.connect(tmp_path / "o.db", workers=2)
    c.execute("pragma synchronous = OFF")
    assert c.execute("pragma synchronous").fetchone() == (0,)
    c.execute("create table w(x)")
    c.execute("insert into w values (1)")
    c.commit()
    assert c.pool_status()["fsyncs"] == 0
    c.close()


def test_idle_writer_is_revoked_when_another_writer_waits(tmp_path):
    path = tmp_path / "r.db"
    a = mpsqlite.connect(path, workers=2, max_write_seconds=0.3)
    a.execute("create table t(x)")
    a.execute("insert into t values (1)")  # opens a transaction and sits on it
    b = mpsqlite.connect(path, workers=2, timeout=10)
    start = time.monotonic()
    b.execute("insert into t values (2)")
    b.commit()
    assert time.monotonic() - start < 9
    with pytest.raises(sqlite3.OperationalError, match="max_write_seconds"):
        a.commit()
    a.execute("insert into t values (3)")  # the connection is usable again
    a.commit()
    assert sorted(sqlite3.connect(path).execute("select x from t")) == [(2,), (3,)]
    a.close()
    b.close()


@pytest.mark.parametrize("end", ["rollback()", "ROLLBACK", "autocommit=True"])
def test_a_revoked_transaction_is_acknowledged_by_rollback(tmp_path, end):
    if end == "autocommit=True" and sys.version_info < (3, 12):
        pytest.skip("Connection.autocommit exists from Python 3.12")
    path = tmp_path / "r.db"
    kwargs = {"autocommit": True} if end == "autocommit=True" else {"isolation_level": None}
    a = mpsqlite.connect(path, workers=2, max_write_seconds=0.2, **kwargs)
    a.execute("create table t(x)")
    a.execute("begin")
    a.execute("insert into t values (1)")  # sits on the writer slot
    b = mpsqlite.connect(path, workers=2, timeout=10)
    b.execute("insert into t values (2)")
    b.commit()
    with pytest.raises(sqlite3.OperationalError, match="max_write_seconds"):
        a.execute("insert into t values (3)")
    if end == "ROLLBACK":
        a.execute("ROLLBACK")
    else:
        a.rollback()
    a.execute("insert into t values (4)")  # usable again, in autocommit mode
    assert sorted(sqlite3.connect(path).execute("select x from t")) == [(2,), (4,)]
    a.close()
    b.close()


def test_writer_waits_for_its_turn_instead_of_locking(tmp_path):
    path = tmp_path / "q.db"
    a = mpsqlite.connect(path, workers=2)
    a.execute("create table t(x)")
    a.execute("insert into t values (1)")
    b = mpsqlite.connect(path, workers=2, timeout=0.2)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        b.execute("insert into t values (2)")
    a.commit()
    b.execute("insert into t values (2)")
    b.commit()
    assert a.execute("select count(*) from t").fetchone() == (2,)
    a.close()
    b.close()


def test_rollback_without_transaction_costs_no_round_trip(con):
    before = con.pool_status()["statements"]
    for _ in range(10):
        con.rollback()
        con.commit()
    assert con.pool_status()["statements"] == before


def test_open_cursor_on_single_worker_does_not_deadlock_a_write(tmp_path):
    c = mpsqlite.connect(tmp_path / "one.db", workers=1, timeout=2)
    c.execute("create table t(x)")
    c.executemany("insert into t values (?)", [(i,) for i in range(2000)])
    c.commit()
    cur = c.execute("select x from t")  # > one reply: holds the only worker
    first = cur.fetchone()
    c.execute("insert into t values (-1)")
    c.commit()
    assert first == (0,)
    assert len(cur.fetchall()) >= 1999
    c.close()


def test_unused_shared_pool_lingers_then_stops(tmp_path, monkeypatch):
    from mpsqlite import registry

    monkeypatch.setattr(registry, "LINGER_SECONDS", 0.3)
    c = mpsqlite.connect(tmp_path / "l.db", workers=2)
    pool = c._pool
    pids = [w["pid"] for w in c.pool_status()["workers"]]
    c.close()
    again = mpsqlite.connect(tmp_path / "l.db", workers=2)
    assert again._pool is pool  # reused within the linger time
    again.close()
    deadline = time.monotonic() + 5
    while not pool.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.closed

    def running(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(running(pid) for pid in pids)


def test_attach_is_pool_wide_and_may_be_repeated(tmp_path):
    other = tmp_path / "other.db"
    a = mpsqlite.connect(tmp_path / "main.db", workers=2)
    a.execute(f"ATTACH DATABASE '{other}' AS o")
    a.execute("create table o.z(v)")
    a.execute("insert into o.z values (1)")
    a.commit()
    b = mpsqlite.connect(tmp_path / "main.db", workers=2)
    b.execute(f"ATTACH DATABASE '{other}' AS o")  # sqlite3 allows this per connection
    assert {tuple(b.execute("select v from o.z").fetchall()) for _ in range(6)} == {((1,),)}
    a.close()
    b.close()


def test_schema_pragmas_see_ddl_made_on_another_worker(tmp_path):
    c = mpsqlite.connect(tmp_path / "fk.db", workers=3, isolation_level=None, local_reads=False)
    for _ in range(3):
        c.execute("select 1").fetchall()
    c.execute("create table x(id integer primary key)")
    c.execute("create table t(x_id integer references x(id))")
    for _ in range(6):
        assert len(c.execute("pragma foreign_key_list(t)").fetchall()) == 1
    c.close()


def test_repeated_registrations_do_not_grow_the_setup_list(con):
    size = len(con._pool.setup)
    for _ in range(5):
        con.create_function("f", 1, abs)
        con.execute("pragma foreign_keys = on")
    assert len(con._pool.setup) == size + 2
    con.create_function("f", 1, lambda x: x)  # a different function is recorded
    assert len(con._pool.setup) == size + 3
    assert con.execute("select f(-2)").fetchone() == (-2,)


def test_temp_objects_turn_local_reads_off(tmp_path):
    c = mpsqlite.connect(tmp_path / "tmp.db", workers=1)
    c.execute("create table t(x)")
    assert not c._pool.local.disabled
    c.execute("create temp view v as select 1 as one")
    assert c._pool.local.disabled
    assert c.execute("select name from sqlite_temp_master").fetchall() == [("v",)]
    assert c.execute("select one from v").fetchall() == [(1,)]
    c.close()


def test_without_group_commit_sqlite_syncs_itself(tmp_path):
    c = mpsqlite.connect(tmp_path / "n.db", workers=2, group_commit=False)
    c.execute("pragma synchronous = FULL")
    c.execute("create table w(x)")
    c.execute("insert into w values (1)")
    c.commit()
    assert c.pool_status()["commits"] == 0
    assert {c.execute("pragma synchronous").fetchone() for _ in range(4)} == {(2,)}
    c.close()


def test_pure_sql_stays_local_however_long_sqlite_works(con):
    sql = (
        "with recursive r(i) as (select 1 union all select i + 1 from r where i < 300000) "
        "select count(*) from r"
    )
    before = con.pool_status()["local_statements"]
    for _ in range(6):
        assert con.execute(sql).fetchone() == (300000,)
    assert sql not in con._pool.local.heavy
    assert con.pool_status()["local_statements"] - before == 6

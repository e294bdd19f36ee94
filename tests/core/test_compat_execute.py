"""Executing statements and fetching results: parameters, executemany, executescript,
fetch*, description, rowcount and lastrowid must behave exactly as in sqlite3."""

from __future__ import annotations

import pytest

_ROWS = [(1, "ann", 1.5), (2, "bob", None), (3, "cid", -2.0), (4, "dee", 0.0), (5, "eve", 10.25)]


@pytest.fixture
def people(conn):
    """``conn`` with a committed table ``people(id, name, score)`` holding ``_ROWS``."""
    conn.execute("create table people(id integer primary key, name text, score real)")
    conn.executemany("insert into people values (?, ?, ?)", _ROWS)
    conn.commit()
    return conn


def test_qmark_params_tuple(conn):
    assert conn.execute("select ?, ?", (1, "a")).fetchall() == [(1, "a")]


def test_qmark_params_list(conn):
    assert conn.execute("select ? + ?", [2, 3]).fetchone() == (5,)


def test_named_params_dict(conn):
    assert conn.execute("select :a, :b, :a", {"a": 1, "b": 2}).fetchone() == (1, 2, 1)


def test_named_params_other_prefixes(conn):
    assert conn.execute("select @x || $y", {"x": "p", "y": "q"}).fetchone() == ("pq",)


def test_named_params_extra_keys_ignored(conn):
    assert conn.execute("select :a", {"a": 1, "unused": 2}).fetchone() == (1,)


def test_named_params_mapping_subclass(conn):
    class Params(dict):
        pass

    assert conn.execute("select :v", Params(v="x")).fetchone() == ("x",)


def test_no_params(conn):
    assert conn.execute("select 'plain'").fetchall() == [("plain",)]


def test_select_from_table(people):
    assert people.execute("select * from people order by id").fetchall() == _ROWS


def test_executemany_list(conn):
    conn.execute("create table t(a, b)")
    conn.executemany("insert into t values (?, ?)", [(1, "x"), (2, "y")])
    assert conn.execute("select * from t order by a").fetchall() == [(1, "x"), (2, "y")]


def test_executemany_generator(conn):
    conn.execute("create table t(a)")
    conn.executemany("insert into t values (?)", ((i,) for i in range(50)))
    assert conn.execute("select count(*), sum(a) from t").fetchone() == (50, sum(range(50)))


def test_executemany_named(conn):
    conn.execute("create table t(a, b)")
    conn.executemany("insert into t values (:a, :b)", [{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    assert conn.execute("select a, b from t order by a").fetchall() == [(1, 2), (3, 4)]


def test_executemany_empty(conn):
    conn.execute("create table t(a)")
    cur = conn.executemany("insert into t values (?)", [])
    assert cur.rowcount == 0
    assert conn.execute("select count(*) from t").fetchone() == (0,)


def test_executescript(conn):
    conn.executescript(
        """
        create table a(x);
        insert into a values (1);
        insert into a values (2);
        create table b(y);
        insert into b select x * 10 from a;
        """
    )
    assert conn.execute("select y from b order by y").fetchall() == [(10,), (20,)]


def test_executescript_returns_cursor(conn, dbapi):
    cur = conn.cursor()
    assert cur.executescript("select 1;") is cur
    assert isinstance(conn.executescript("select 1;"), dbapi.Cursor)


def test_executescript_commits_pending_transaction(conn, observer):
    conn.execute("create table t(x)")
    conn.commit()
    conn.execute("insert into t values (1)")
    assert conn.in_transaction
    conn.executescript("insert into t values (2);")
    conn.rollback()
    assert observer.execute("select x from t order by x").fetchall() == [(1,), (2,)]


def test_fetchone_until_none(people):
    cur = people.execute("select id from people where id <= 2 order by id")
    assert cur.fetchone() == (1,)
    assert cur.fetchone() == (2,)
    assert cur.fetchone() is None
    assert cur.fetchone() is None


def test_fetchmany_default_arraysize_is_one(people):
    cur = people.execute("select id from people order by id")
    assert cur.arraysize == 1
    assert cur.fetchmany() == [(1,)]


def test_fetchmany_uses_arraysize(people):
    cur = people.cursor()
    cur.arraysize = 3
    cur.execute("select id from people order by id")
    assert cur.fetchmany() == [(1,), (2,), (3,)]
    assert cur.fetchmany() == [(4,), (5,)]
    assert cur.fetchmany() == []


@pytest.mark.parametrize("size", [0, -1])
def test_fetchmany_size_zero_or_less_fetches_every_row(people, size):
    cur = people.execute("select id from people order by id")
    assert cur.fetchone() == (1,)
    assert cur.fetchmany(size) == [(2,), (3,), (4,), (5,)]
    assert cur.fetchmany(size) == []


def test_fetchmany_explicit_size(people):
    cur = people.execute("select id from people order by id")
    assert cur.fetchmany(2) == [(1,), (2,)]
    assert cur.fetchmany(size=10) == [(3,), (4,), (5,)]


def test_fetch_mixed(people):
    cur = people.execute("select id from people order by id")
    assert cur.fetchone() == (1,)
    assert cur.fetchmany(2) == [(2,), (3,)]
    assert cur.fetchall() == [(4,), (5,)]
    assert cur.fetchall() == []


def test_iteration(people):
    cur = people.execute("select id from people order by id")
    assert iter(cur) is cur
    assert [row for row in cur] == [(i,) for i in range(1, 6)]


def test_iteration_large_result(conn):
    cur = conn.execute(
        "with recursive c(n) as (select 1 union all select n + 1 from c where n < 20000) "
        "select n from c"
    )
    total = 0
    for count, (n,) in enumerate(cur, start=1):
        assert n == count
        total += n
    assert total == 20000 * 20001 // 2


def test_new_execute_discards_unfetched_rows(people):
    cur = people.cursor()
    cur.execute("select id from people order by id")
    cur.fetchone()
    cur.execute("select name from people where id = 5")
    assert cur.fetchall() == [("eve",)]


def test_two_cursors_independent(people):
    a = people.execute("select id from people order by id")
    b = people.execute("select id from people order by id desc")
    assert a.fetchone() == (1,)
    assert b.fetchone() == (5,)
    assert a.fetchone() == (2,)


def test_fetch_after_dml_is_empty(conn):
    conn.execute("create table t(x)")
    cur = conn.execute("insert into t values (1)")
    assert cur.fetchall() == []
    assert cur.fetchone() is None


def test_description_is_seven_tuples(people):
    cur = people.execute("select id, name as who, score * 2 from people")
    assert cur.description == (
        ("id", None, None, None, None, None, None),
        ("who", None, None, None, None, None, None),
        ("score * 2", None, None, None, None, None, None),
    )


def test_description_set_for_empty_result(people):
    cur = people.execute("select id from people where 0")
    assert cur.description == (("id", None, None, None, None, None, None),)
    assert cur.fetchall() == []


def test_description_none_before_execute_and_after_dml(conn):
    cur = conn.cursor()
    assert cur.description is None
    cur.execute("create table t(x)")
    assert cur.description is None
    cur.execute("insert into t values (1)")
    assert cur.description is None


def test_rowcount_before_execute(conn):
    assert conn.cursor().rowcount == -1


def test_rowcount_after_dml(people):
    assert people.execute("update people set score = 0 where id > 2").rowcount == 3
    assert people.execute("delete from people where id = 1").rowcount == 1
    assert people.execute("insert into people(name) values ('z')").rowcount == 1
    assert people.execute("delete from people").rowcount == 5


def test_rowcount_after_select_is_minus_one(people):
    cur = people.execute("select * from people")
    cur.fetchall()
    assert cur.rowcount == -1


def test_rowcount_after_ddl_is_minus_one(conn):
    assert conn.execute("create table t(x)").rowcount == -1


def test_rowcount_after_executemany_is_sum(people):
    cur = people.executemany(
        "update people set score = ? where id <= ?", [(1.0, 1), (2.0, 3), (3.0, 5)]
    )
    assert cur.rowcount == 1 + 3 + 5


def test_lastrowid_none_on_new_cursor(conn):
    assert conn.cursor().lastrowid is None


def test_lastrowid_after_insert(people):
    cur = people.execute("insert into people(name) values ('new')")
    assert cur.lastrowid == 6
    cur.execute("insert into people(id, name) values (100, 'far')")
    assert cur.lastrowid == 100


def test_lastrowid_after_insert_in_rowid_table(conn):
    conn.execute("create table t(x)")
    cur = conn.cursor()
    for expected in (1, 2, 3):
        cur.execute("insert into t values ('v')")
        assert cur.lastrowid == expected


def test_lastrowid_after_executemany(conn):
    """sqlite3 (3.10 to 3.13) does not update lastrowid in executemany()."""
    conn.execute("create table t(id integer primary key, x)")
    fresh = conn.cursor()
    fresh.executemany("insert into t(x) values (?)", [(1,), (2,)])
    assert fresh.lastrowid is None
    cur = conn.cursor()
    cur.execute("insert into t(x) values (3)")
    assert cur.lastrowid == 3
    cur.executemany("insert into t(x) values (?)", [(4,), (5,)])
    assert cur.lastrowid == 3


def test_cursor_close_is_idempotent(conn):
    cur = conn.cursor()
    cur.execute("select 1")
    cur.close()
    cur.close()


def test_setinputsizes_and_setoutputsize_are_noops(conn):
    cur = conn.cursor()
    assert cur.setinputsizes([10, 20]) is None
    assert cur.setoutputsize(100) is None
    assert cur.setoutputsize(100, 0) is None
    assert cur.execute("select 1").fetchone() == (1,)

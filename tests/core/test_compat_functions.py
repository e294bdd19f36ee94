"""User-defined SQL functions, aggregates, window functions and collations, as in sqlite3."""

from __future__ import annotations

import sqlite3

import pytest

_needs_window = pytest.mark.skipif(
    not hasattr(sqlite3.Connection, "create_window_function"),
    reason="create_window_function exists from Python 3.11",
)


@pytest.fixture
def numbers(conn):
    """``conn`` with a committed table ``n(x)`` holding 1..5."""
    conn.execute("create table n(x)")
    conn.executemany("insert into n values (?)", [(i,) for i in range(1, 6)])
    conn.commit()
    return conn


def _double(value):
    return value * 2


def test_create_function_def(conn):
    conn.create_function("double", 1, _double)
    assert conn.execute("select double(21)").fetchone() == (42,)


def test_create_function_lambda(conn):
    conn.create_function("rev", 1, lambda s: s[::-1])
    assert conn.execute("select rev('abc')").fetchone() == ("cba",)


def test_create_function_closure(conn):
    prefix = "pre-"

    def _tag(value):
        return prefix + value

    conn.create_function("tag", 1, _tag)
    assert conn.execute("select tag('x')").fetchone() == ("pre-x",)


def test_create_function_used_on_table_rows(numbers):
    numbers.create_function("double", 1, _double)
    assert numbers.execute("select sum(double(x)) from n").fetchone() == (30,)


def test_create_function_in_where_and_dml(numbers):
    numbers.create_function("is_even", 1, lambda v: v % 2 == 0)
    numbers.execute("delete from n where is_even(x)")
    assert numbers.execute("select x from n order by x").fetchall() == [(1,), (3,), (5,)]


def test_create_function_varargs(conn):
    conn.create_function("total", -1, lambda *args: sum(args))
    assert conn.execute("select total(), total(1), total(1, 2, 3)").fetchone() == (0, 1, 6)


def test_create_function_zero_args(conn):
    conn.create_function("answer", 0, lambda: 42)
    assert conn.execute("select answer()").fetchone() == (42,)


def test_create_function_result_types(conn):
    conn.create_function("echo", 1, lambda v: v)
    row = conn.execute("select echo(1), echo(2.5), echo('s'), echo(x'01'), echo(null)").fetchone()
    assert row == (1, 2.5, "s", b"\x01", None)


def test_create_function_wrong_arg_count(conn):
    conn.create_function("one", 1, lambda v: v)
    with pytest.raises(sqlite3.OperationalError, match="wrong number of arguments"):
        conn.execute("select one(1, 2)")


def test_create_function_raising(conn):
    def _boom(value):
        raise ValueError("nope")

    conn.create_function("boom", 1, _boom)
    with pytest.raises(sqlite3.OperationalError, match="user-defined function raised exception"):
        conn.execute("select boom(1)").fetchall()
    assert conn.execute("select 1").fetchone() == (1,)


def test_deterministic_function_allowed_in_index(numbers):
    numbers.create_function("double", 1, _double, deterministic=True)
    numbers.execute("create index n_double on n(double(x))")
    assert numbers.execute("select x from n where double(x) = 8").fetchall() == [(4,)]


def test_non_deterministic_function_refused_in_index(numbers):
    numbers.create_function("double", 1, _double)
    with pytest.raises(sqlite3.OperationalError, match="non-deterministic"):
        numbers.execute("create index n_double on n(double(x))")


def test_redefine_function(conn):
    conn.create_function("f", 0, lambda: 1)
    conn.create_function("f", 0, lambda: 2)
    assert conn.execute("select f()").fetchone() == (2,)


class _Product:
    """Aggregate multiplying its inputs."""

    def __init__(self):
        self.value = 1

    def step(self, x):
        self.value *= x

    def finalize(self):
        return self.value


class _Joiner:
    """Two-argument aggregate joining values with a separator."""

    def __init__(self):
        self.parts = []
        self.sep = ","

    def step(self, value, sep):
        self.parts.append(str(value))
        self.sep = sep

    def finalize(self):
        return self.sep.join(self.parts)


def test_create_aggregate(numbers):
    numbers.create_aggregate("product", 1, _Product)
    assert numbers.execute("select product(x) from n").fetchone() == (120,)


def test_create_aggregate_two_args_and_group_by(numbers):
    numbers.create_aggregate("joined", 2, _Joiner)
    rows = numbers.execute(
        "select x % 2, joined(x, '-') from (select x from n order by x) group by x % 2 "
        "order by x % 2"
    ).fetchall()
    assert rows == [(0, "2-4"), (1, "1-3-5")]


def test_create_aggregate_empty_input(numbers):
    """sqlite3 never instantiates the class when no row is stepped: the result is NULL."""
    numbers.create_aggregate("product", 1, _Product)
    assert numbers.execute("select product(x) from n where 0").fetchone() == (None,)


def test_aggregate_raising_in_step(numbers):
    class _Bad(_Product):
        def step(self, x):
            raise RuntimeError("bad step")

    numbers.create_aggregate("bad", 1, _Bad)
    with pytest.raises(sqlite3.OperationalError, match="'step' method raised error"):
        numbers.execute("select bad(x) from n").fetchall()


class _WindowSum:
    """Window function: running sum over the frame."""

    def __init__(self):
        self.total = 0

    def step(self, value):
        self.total += value

    def inverse(self, value):
        self.total -= value

    def value(self):
        return self.total

    def finalize(self):
        return self.total


@_needs_window
def test_create_window_function(numbers):
    numbers.create_window_function("wsum", 1, _WindowSum)
    rows = numbers.execute(
        "select x, wsum(x) over (order by x rows between 1 preceding and current row) "
        "from n order by x"
    ).fetchall()
    assert rows == [(1, 1), (2, 3), (3, 5), (4, 7), (5, 9)]


@_needs_window
def test_window_function_also_works_as_aggregate(numbers):
    numbers.create_window_function("wsum", 1, _WindowSum)
    assert numbers.execute("select wsum(x) from n").fetchone() == (15,)


def _reverse_collation(a, b):
    return (a < b) - (a > b)


@pytest.fixture
def words(conn):
    """``conn`` with a committed table ``w(s)`` holding some words."""
    conn.execute("create table w(s)")
    conn.executemany("insert into w values (?)", [("b",), ("a",), ("c",)])
    conn.commit()
    return conn


def test_create_collation(words):
    words.create_collation("reverse", _reverse_collation)
    rows = words.execute("select s from w order by s collate reverse").fetchall()
    assert rows == [("c",), ("b",), ("a",)]


def test_create_collation_lambda(words):
    words.create_collation("bylen", lambda a, b: len(a) - len(b))
    words.execute("insert into w values ('zzzz'), ('yy')")
    rows = words.execute("select s from w where length(s) > 1 order by s collate bylen")
    assert rows.fetchall() == [("yy",), ("zzzz",)]


def test_create_collation_in_table_definition(conn):
    conn.create_collation("reverse", _reverse_collation)
    conn.execute("create table r(s text collate reverse)")
    conn.executemany("insert into r values (?)", [("a",), ("c",), ("b",)])
    assert conn.execute("select s from r order by s").fetchall() == [("c",), ("b",), ("a",)]


def test_remove_collation_with_none(words):
    words.create_collation("reverse", _reverse_collation)
    words.create_collation("reverse", None)
    with pytest.raises(sqlite3.OperationalError, match="no such collation sequence: reverse"):
        words.execute("select s from w order by s collate reverse").fetchall()


def test_collation_name_must_be_string(conn):
    with pytest.raises(TypeError):
        conn.create_collation(None, _reverse_collation)

"""Row factories (sqlite3.Row, the module's Row, custom) and text_factory, as in sqlite3."""

from __future__ import annotations

import sqlite3

import pytest


@pytest.fixture(params=["module_row", "sqlite3_row"])
def row_class(request, dbapi):
    """The Row class to install: the module's own ``Row`` or ``sqlite3.Row``."""
    return dbapi.Row if request.param == "module_row" else sqlite3.Row


@pytest.fixture
def row_conn(conn, row_class):
    """``conn`` with ``row_factory`` set and a table ``t(id, Name, score)`` of two rows."""
    conn.execute("create table t(id integer primary key, Name text, score real)")
    conn.executemany("insert into t values (?, ?, ?)", [(1, "ann", 1.5), (2, "bob", None)])
    conn.commit()
    conn.row_factory = row_class
    return conn


def _first(conn):
    return conn.execute("select id, Name, score from t order by id").fetchone()


def test_row_factory_attribute(row_conn, row_class):
    assert row_conn.row_factory is row_class


def test_row_is_instance_of_module_row(row_conn, dbapi):
    """Rows are the module's Row (mpsqlite may stand in its own Row for sqlite3.Row, whose
    constructor needs a real sqlite3 cursor)."""
    assert isinstance(_first(row_conn), dbapi.Row)


def test_row_index_by_position(row_conn):
    row = _first(row_conn)
    assert (row[0], row[1], row[2]) == (1, "ann", 1.5)
    assert row[-1] == 1.5


def test_row_slice(row_conn):
    assert _first(row_conn)[0:2] == (1, "ann")


def test_row_index_by_name(row_conn):
    row = _first(row_conn)
    assert row["id"] == 1
    assert row["Name"] == "ann"


def test_row_index_by_name_case_insensitive(row_conn):
    row = _first(row_conn)
    assert row["name"] == row["NAME"] == row["nAmE"] == "ann"


def test_row_missing_name(row_conn):
    with pytest.raises(IndexError):
        _first(row_conn)["nope"]


def test_row_position_out_of_range(row_conn):
    with pytest.raises(IndexError):
        _first(row_conn)[3]


def test_row_keys(row_conn):
    assert _first(row_conn).keys() == ["id", "Name", "score"]


def test_row_keys_use_aliases(row_conn):
    row = row_conn.execute("select id as ident, Name || '!' as shout from t").fetchone()
    assert row.keys() == ["ident", "shout"]
    assert row["SHOUT"] == "ann!"


def test_row_len(row_conn):
    assert len(_first(row_conn)) == 3


def test_row_iteration(row_conn):
    assert list(_first(row_conn)) == [1, "ann", 1.5]
    assert tuple(_first(row_conn)) == (1, "ann", 1.5)


def test_row_equality_and_hash(row_conn):
    first, again = _first(row_conn), _first(row_conn)
    assert first == again
    assert hash(first) == hash(again)
    second = row_conn.execute("select id, Name, score from t where id = 2").fetchone()
    assert first != second


def test_row_fetchall_and_iteration(row_conn):
    rows = row_conn.execute("select Name from t order by id").fetchall()
    assert [r["name"] for r in rows] == ["ann", "bob"]
    assert [r[0] for r in row_conn.execute("select Name from t order by id")] == ["ann", "bob"]


def test_row_factory_set_on_cursor(conn, dbapi):
    cur = conn.cursor()
    cur.row_factory = dbapi.Row
    row = cur.execute("select 1 as one").fetchone()
    assert row["one"] == 1
    assert conn.execute("select 1 as one").fetchone() == (1,)


def test_row_factory_reset_to_none(conn, dbapi):
    conn.row_factory = dbapi.Row
    conn.row_factory = None
    assert conn.execute("select 1 as one").fetchone() == (1,)


def test_custom_row_factory_gets_cursor_and_tuple(conn):
    seen = []

    def _dict_factory(cursor, row):
        seen.append((type(row), cursor.description))
        return {col[0]: value for col, value in zip(cursor.description, row)}

    conn.row_factory = _dict_factory
    assert conn.execute("select 1 as a, 'x' as b").fetchall() == [{"a": 1, "b": "x"}]
    assert seen[0][0] is tuple
    assert [d[0] for d in seen[0][1]] == ["a", "b"]


def test_custom_row_factory_lambda(conn):
    conn.row_factory = lambda cursor, row: row[0] * 2
    assert conn.execute("select 21 union all select 5").fetchall() == [42, 10]


def test_default_text_factory_is_str(conn):
    assert conn.text_factory is str
    assert conn.execute("select 'héllo'").fetchone() == ("héllo",)


def test_text_factory_bytes(conn):
    conn.text_factory = bytes
    assert conn.execute("select 'héllo'").fetchone() == ("héllo".encode(),)


def test_text_factory_bytes_does_not_touch_blobs_or_numbers(conn):
    conn.text_factory = bytes
    assert conn.execute("select x'00ff', 3, 2.5, null").fetchone() == (b"\x00\xff", 3, 2.5, None)


def test_text_factory_lambda(conn):
    conn.text_factory = lambda raw: raw.decode("utf-8").upper()
    assert conn.execute("select 'abc'").fetchone() == ("ABC",)


def test_text_factory_decodes_non_utf8(conn):
    conn.text_factory = lambda raw: raw.decode("latin-1")
    assert conn.execute("select cast(x'e9' as text)").fetchone() == ("\xe9",)


def test_invalid_utf8_with_str_factory(conn):
    with pytest.raises(sqlite3.OperationalError, match="Could not decode to UTF-8"):
        conn.execute("select cast(x'ff' as text)").fetchall()


def test_text_factory_back_to_str(conn):
    conn.text_factory = bytes
    conn.text_factory = str
    assert conn.execute("select 'abc'").fetchone() == ("abc",)

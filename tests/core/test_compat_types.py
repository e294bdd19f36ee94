"""Value round trips and type adaptation (adapters, converters, detect_types), as in sqlite3."""

from __future__ import annotations

import datetime
import sqlite3

import pytest


@pytest.fixture
def vals(conn):
    """``conn`` with an empty untyped table ``v(x)``."""
    conn.execute("create table v(x)")
    return conn


def _roundtrip(conn, value):
    conn.execute("delete from v")
    conn.execute("insert into v values (?)", (value,))
    (result,) = conn.execute("select x from v").fetchone()
    return result


def test_blob_bytes(vals):
    data = bytes(range(256)) * 4
    result = _roundtrip(vals, data)
    assert type(result) is bytes
    assert result == data


def test_blob_empty(vals):
    assert _roundtrip(vals, b"") == b""


def test_blob_memoryview_param(vals):
    assert _roundtrip(vals, memoryview(b"\x00\x01\x02")) == b"\x00\x01\x02"


def test_blob_bytearray_param(vals):
    assert _roundtrip(vals, bytearray(b"\xff\xfe")) == b"\xff\xfe"


def test_blob_binary_constructor(vals, dbapi):
    assert _roundtrip(vals, dbapi.Binary(b"\x00zero\x00")) == b"\x00zero\x00"


def test_blob_large(vals):
    data = bytes(range(256)) * 8192  # 2 MiB
    assert _roundtrip(vals, data) == data


def test_blob_literal_and_typeof(conn):
    assert conn.execute("select x'deadbeef', typeof(?)", (b"a",)).fetchone() == (
        b"\xde\xad\xbe\xef",
        "blob",
    )


@pytest.mark.parametrize("value", [0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63)])
def test_integers(vals, value):
    result = _roundtrip(vals, value)
    assert type(result) is int
    assert result == value


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_integer_overflow(conn, value):
    with pytest.raises(OverflowError):
        conn.execute("select ?", (value,)).fetchall()
    assert conn.execute("select 1").fetchone() == (1,)


def test_bool_is_stored_as_int(vals):
    result = _roundtrip(vals, True)
    assert type(result) is int
    assert result == 1


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5, 1e300, -1e-300, 3.141592653589793])
def test_floats(vals, value):
    result = _roundtrip(vals, value)
    assert type(result) is float
    assert result == value


def test_float_infinity(vals):
    assert _roundtrip(vals, float("inf")) == float("inf")


def test_none(vals):
    assert _roundtrip(vals, None) is None


@pytest.mark.parametrize("text", ["", "plain", "héllo wörld", "日本語", "emoji 🐍", "nul\x00in"])
def test_unicode(vals, text):
    assert _roundtrip(vals, text) == text


def test_long_text(vals):
    text = "ab€" * 200_000
    assert _roundtrip(vals, text) == text


def test_typeof_each_type(conn):
    row = conn.execute(
        "select typeof(?), typeof(?), typeof(?), typeof(?), typeof(?)", (1, 1.0, "s", b"b", None)
    ).fetchone()
    assert row == ("integer", "real", "text", "blob", "null")


def test_column_affinity(conn):
    conn.execute("create table a(i integer, r real, t text)")
    conn.execute("insert into a values ('7', 2, 3)")
    assert conn.execute("select i, r, t from a").fetchone() == (7, 2.0, "3")


class _Point:
    """Value type for the adapter/converter tests."""

    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Point) and (self.x, self.y) == (other.x, other.y)

    def __repr__(self) -> str:
        return f"_Point({self.x}, {self.y})"


def _adapt_point(point: _Point) -> str:
    return f"{point.x};{point.y}"


def _convert_point(raw: bytes) -> _Point:
    x, y = map(float, raw.split(b";"))
    return _Point(x, y)


@pytest.fixture
def point_types(dbapi):
    """Register the _Point adapter and the 'point' converter; unregister at teardown."""
    adapters = dict(sqlite3.adapters)
    converters = dict(sqlite3.converters)
    dbapi.register_adapter(_Point, _adapt_point)
    dbapi.register_converter("point", _convert_point)
    yield
    sqlite3.adapters.clear()
    sqlite3.adapters.update(adapters)
    sqlite3.converters.clear()
    sqlite3.converters.update(converters)


def test_adapter_without_detect_types(point_types, conn):
    conn.execute("create table p(pt point)")
    conn.execute("insert into p values (?)", (_Point(1.0, 2.5),))
    assert conn.execute("select pt from p").fetchone() == ("1.0;2.5",)


def test_adapter_and_converter_decltypes(point_types, connect, dbapi):
    conn = connect(detect_types=dbapi.PARSE_DECLTYPES)
    conn.execute("create table p(pt point)")
    conn.execute("insert into p values (?)", (_Point(1.0, 2.5),))
    assert conn.execute("select pt from p").fetchone() == (_Point(1.0, 2.5),)


def test_converter_name_is_case_insensitive(point_types, connect, dbapi):
    conn = connect(detect_types=dbapi.PARSE_DECLTYPES)
    conn.execute("create table p(pt POINT)")
    conn.execute("insert into p values ('3;4')")
    assert conn.execute("select pt from p").fetchone() == (_Point(3.0, 4.0),)


def test_converter_colnames(point_types, connect, dbapi):
    conn = connect(detect_types=dbapi.PARSE_COLNAMES)
    row = conn.execute("select '5;6' as \"pt [point]\"").fetchone()
    assert row == (_Point(5.0, 6.0),)
    assert conn.execute("select '5;6' as \"pt [point]\"").description[0][0] == "pt"


def test_converter_not_applied_to_null(point_types, connect, dbapi):
    conn = connect(detect_types=dbapi.PARSE_DECLTYPES)
    conn.execute("create table p(pt point)")
    conn.execute("insert into p values (null)")
    assert conn.execute("select pt from p").fetchone() == (None,)


def test_converter_not_applied_without_detect_types(point_types, conn):
    conn.execute("create table p(pt point)")
    conn.execute("insert into p values ('1;1')")
    assert conn.execute("select pt from p").fetchone() == ("1;1",)


def test_adapter_in_executemany(point_types, connect, dbapi):
    conn = connect(detect_types=dbapi.PARSE_DECLTYPES)
    conn.execute("create table p(pt point)")
    conn.executemany("insert into p values (?)", [(_Point(i, i),) for i in range(3)])
    rows = conn.execute("select pt from p order by rowid").fetchall()
    assert rows == [(_Point(i, i),) for i in range(3)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_default_date_and_datetime_converters(connect, dbapi):
    conn = connect(detect_types=dbapi.PARSE_DECLTYPES)
    conn.execute("create table d(day date, moment timestamp)")
    day = datetime.date(2020, 2, 29)
    moment = datetime.datetime(2021, 3, 4, 5, 6, 7, 890123)
    conn.execute("insert into d values (?, ?)", (day, moment))
    assert conn.execute("select day, moment from d").fetchone() == (day, moment)
    assert conn.execute("select typeof(day), typeof(moment) from d").fetchone() == (
        "text",
        "text",
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_default_date_adapter_without_detect_types(conn):
    conn.execute("create table d(day date)")
    conn.execute("insert into d values (?)", (datetime.date(2020, 1, 2),))
    assert conn.execute("select day from d").fetchone() == ("2020-01-02",)

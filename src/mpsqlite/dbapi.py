"""PEP 249 type objects and constructors, sqlite3-compatible.

sqlite3 reports ``None`` as every column's type code; these objects compare
equal to SQLite declared type names by SQLite's type affinity rules, and the
constructors are sqlite3's own.
"""

from __future__ import annotations

import datetime
import time


def _affinity(decl: str) -> str:
    """SQLite's column affinity for a declared type (section 3.1 of datatype3)."""
    d = decl.upper()
    if "INT" in d:
        return "INTEGER"
    if "CHAR" in d or "CLOB" in d or "TEXT" in d:
        return "TEXT"
    if "BLOB" in d or not d:
        return "BLOB"
    if "REAL" in d or "FLOA" in d or "DOUB" in d:
        return "REAL"
    return "NUMERIC"


class DBAPITypeObject:
    """Compares equal to type codes (declared type names) of its kind."""

    __slots__ = ("name", "_affinities", "_names")

    def __init__(self, name: str, affinities: tuple[str, ...], names: tuple[str, ...] = ()) -> None:
        self.name = name
        self._affinities = frozenset(affinities)
        self._names = frozenset(names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DBAPITypeObject):
            return self is other
        if isinstance(other, str):
            up = other.upper()
            if self._names:
                return any(n in up for n in self._names)
            return _affinity(other) in self._affinities
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<mpsqlite type object {self.name}>"


STRING = DBAPITypeObject("STRING", ("TEXT",))
BINARY = DBAPITypeObject("BINARY", ("BLOB",))
NUMBER = DBAPITypeObject("NUMBER", ("INTEGER", "REAL", "NUMERIC"))
DATETIME = DBAPITypeObject("DATETIME", (), ("DATE", "TIME"))
ROWID = DBAPITypeObject("ROWID", (), ("ROWID", "OID", "_ROWID_"))

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = memoryview


def DateFromTicks(ticks: float) -> datetime.date:
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    return Timestamp(*time.localtime(ticks)[:6])

"""The operations of a differential run: a pure function of the seed.

The generator keeps a rough model of the schema (what it created, as if
every statement succeeded) to aim most statements at tables that exist; a
wrong guess is one more error for both sides to agree on. Nothing it emits
depends on what either module returned, so a seed always replays the same.

An operation is a plain tuple ``(name, slot, *args)``; ``repr`` prints it
exactly.
"""

from __future__ import annotations

import random
import sys
from typing import Any

#: Connection slots; slot 0 is opened first, the others by operations.
SLOTS = 3
#: Rows in table ``big``: a read of most of it returns over 1000 rows, so mpsqlite
#: judges it heavy and runs it on a worker next time.
BIG_ROWS = 1300
TIMEOUT = 0.05
HAS_AUTOCOMMIT = sys.version_info >= (3, 12)

Op = tuple

_DECLS = {
    "a": "a integer", "b": "b text", "c": "c real", "d": "d blob",
    "u": "u integer unique", "n": "n text not null", "k": "k integer check (k >= 0)",
}
_NORMAL = [0, 1, -1, 7, 42, 10**6, 0.5, -2.25, "x", "héllo", "", b"\x01\x02", None]
_ODD = [2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**100, float("nan"), float("inf"),
        float("-inf"), -0.0, 1e308, "a\x00b", "\ud800", "z\udfff", "\U0001f600", b"",
        b"\x00\xff", True, [1], 1j, "x" * 3000]
_HEAVY = [
    "select * from big where x >= ? order by x",
    "select x, s, ? from big order by x",
    "select s, x * 2 as y from big where s like ? order by x",
]
_BAD = [
    "selec 1", "insert into t0 values (", "select * from nowhere", "select 1; select 2",
    "select 'a\x00b'", "select '\ud800'", "update nowhere set a = 1", "insert into t0(zz) "
    "values (1)", "select ?", "create table", "drop table", "   ", "-- only a comment",
    "savepoint", "release nosuch", "rollback to nosuch",
]


class Generator:
    """Random operations for one seed."""

    def __init__(self, seed: int, slots: int = SLOTS) -> None:
        self.rng = random.Random(seed)
        self.weights = (6, 3, 1)[:slots]
        self.tables: dict[str, list[str]] = {"t0": ["a", "b", "u"]}
        self.indexes: set[str] = set()
        self.opened = [False] * SLOTS
        self.savepoints = 0
        self.count = 0

    def next(self) -> Op:
        self.count += 1
        if not self.opened[0]:
            return self._open(0)
        r = self.rng
        slot = r.choices(range(len(self.weights)), weights=self.weights)[0]
        if not self.opened[slot]:
            return self._open(slot)
        kind = r.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()))[0]
        return getattr(self, "_" + kind)(slot)

    # -- connections ------------------------------------------------------------

    def _open(self, slot: int) -> Op:
        r = self.rng
        kwargs: dict[str, Any] = {"timeout": TIMEOUT}
        level = r.choice(["", "", None, "IMMEDIATE", "DEFERRED", "EXCLUSIVE"])
        if level != "":
            kwargs["isolation_level"] = level
        if HAS_AUTOCOMMIT and r.random() < 0.3:
            kwargs["autocommit"] = r.choice([True, False, -1])
        self.opened[slot] = True
        return ("open", slot, kwargs)

    def _close(self, slot: int) -> Op:
        self.opened[slot] = False
        return ("close", slot)

    def _setting(self, slot: int) -> Op:
        r = self.rng
        pick = r.random()
        if pick < 0.4:
            return ("isolation", slot, r.choice(["", None, "IMMEDIATE", "DEFERRED"]))
        if pick < 0.6 and HAS_AUTOCOMMIT:
            return ("autocommit", slot, r.choice([True, False, -1]))
        return ("row_factory", slot, r.random() < 0.5)

    # -- values -------------------------------------------------------------------

    def value(self, odd: float = 0.15) -> Any:
        r = self.rng
        return r.choice(_ODD) if r.random() < odd else r.choice(_NORMAL)

    def _column_value(self, col: str) -> Any:
        r = self.rng
        if col == "u":
            return r.randrange(6)
        if col == "k":
            return r.choice([0, 1, 5, -1])
        if col == "n":
            return None if r.random() < 0.1 else "n"
        return self.value()

    def _table(self, exists: float = 0.95) -> str:
        r = self.rng
        if self.tables and r.random() < exists:
            return r.choice(sorted(self.tables))
        return f"t{r.randrange(5)}"

    def _target(self) -> str:
        return self.rng.choice(["conn", "conn", "c0", "c1"])

    def _params(self, names: list[str], values: list[Any], named: bool) -> Any:
        """Parameters for ``values``, sometimes one too many or too few."""
        r = self.rng
        values = list(values)
        wrong = r.random()
        if wrong < 0.04:
            values.append(1)
        elif wrong < 0.08 and values:
            values.pop()
        if named:
            return dict(zip(names, values))
        return tuple(values) if r.random() < 0.7 else values

    # -- statements -----------------------------------------------------------------

    def _insert_sql(self, table: str) -> tuple[str, list[str], bool]:
        r = self.rng
        cols = self.tables.get(table) or ["a"]
        chosen = r.sample(cols, r.randint(1, len(cols)))
        verb = r.choice(["insert", "insert", "insert or replace", "insert or ignore", "replace"])
        named = r.random() < 0.3
        marks = ", ".join(f":p_{c}" if named else "?" for c in chosen)
        sql = f"{verb} into {table}({', '.join(chosen)}) values ({marks})"
        return sql, chosen, named

    def _dml(self, slot: int) -> Op:
        r = self.rng
        table = self._table()
        pick = r.random()
        if pick < 0.55:
            sql, cols, named = self._insert_sql(table)
            values = [self._column_value(c) for c in cols]
            params = self._params([f"p_{c}" for c in cols], values, named)
        elif pick < 0.8:
            col = r.choice(self.tables.get(table) or ["a"])
            sql = f"update {table} set {col} = ? where id % ? = 0"
            params = self._params(["x", "y"], [self._column_value(col), r.randint(1, 4)], False)
        elif pick < 0.9:
            sql, params = "update big set s = ? where x = ?", (self.value(), r.randrange(BIG_ROWS))
        else:
            sql, params = f"delete from {table} where id % ? = 0", (r.randint(1, 5),)
        return ("execute", slot, self._target(), sql, params, "none")

    def _select(self, slot: int) -> Op:
        r = self.rng
        table = self._table()
        fetch = r.choice(["all", "all", "one", "many2", "none"])
        pick = r.random()
        if pick < 0.4:
            sql, params = f"select * from {table} order by id", None
        elif pick < 0.6:
            sql, params = f"select count(*), max(id), total(id) from {table}", ()
        elif pick < 0.8:
            sql, params = f"select * from {table} where id = :id", {"id": r.randint(1, 8)}
        else:
            sql, params = "select ?, typeof(?)", self._params([], [self.value(0.5)] * 2, False)
        return ("execute", slot, self._target(), sql, params, fetch)

    def _heavy(self, slot: int) -> Op:
        r = self.rng
        sql = r.choice(_HEAVY)
        if sql.startswith("select *"):
            param: Any = r.choice([0, 10, 200, 1299, 2**63, "1"])
        elif "like" in sql:
            param = r.choice(["s%", "s1%", "%", "\ud800"])
        else:
            param = self.value(0.4)
        fetch = r.choice(["all", "all", "all", "one", "many5", "many2000", "none"])
        return ("execute", slot, self._target(), sql, (param,), fetch)

    def _fetch(self, slot: int) -> Op:
        fetch = self.rng.choice(["all", "one", "many3", "many1500"])
        return ("fetch", slot, self.rng.choice(["c0", "c1", "last"]), fetch)

    def _ddl(self, slot: int) -> Op:
        r = self.rng
        pick = r.random()
        if pick < 0.3:
            name = f"t{r.randrange(5)}"
            cols = r.sample(sorted(_DECLS), r.randint(1, 4))
            guard = " if not exists" if r.random() < 0.3 else ""
            decls = ", ".join(["id integer primary key"] + [_DECLS[c] for c in cols])
            sql = f"create table{guard} {name}({decls})"
            self.tables.setdefault(name, cols)
        elif pick < 0.45:
            name = self._table(0.8)
            guard = " if exists" if r.random() < 0.5 else ""
            sql = f"drop table{guard} {name}"
            self.tables.pop(name, None)
        elif pick < 0.6:
            name = self._table()
            col = r.choice(["a", "b", "c", "d", "e"])
            sql = f"alter table {name} add column {col}"
            if col not in self.tables.get(name, [col]):
                self.tables[name].append(col)
        elif pick < 0.7:
            old, new = self._table(), f"t{r.randrange(5)}"
            sql = f"alter table {old} rename to {new}"
            if old in self.tables and new not in self.tables:
                self.tables[new] = self.tables.pop(old)
        elif pick < 0.85:
            table = self._table()
            col = r.choice(self.tables.get(table) or ["a"])
            unique = "unique " if r.random() < 0.3 else ""
            name = f"i_{table}_{col}"
            sql = f"create {unique}index {name} on {table}({col})"
            self.indexes.add(name)
        elif pick < 0.92:
            name = r.choice(sorted(self.indexes) or ["i_t0_a"])
            sql = f"drop index if exists {name}"
            self.indexes.discard(name)
        elif pick < 0.96:
            sql = f"create temp table if not exists tmp{slot}(x)"
        else:
            sql = f"alter table big add column e{r.randrange(3)}"
        return ("execute", slot, self._target(), sql, None, "none")

    def _transaction(self, slot: int) -> Op:
        sql = self.rng.choice(["begin", "begin immediate", "begin deferred", "begin exclusive",
                               "commit", "end", "rollback", "commit", "rollback"])
        return ("execute", slot, self._target(), sql, None, "none")

    def _end(self, slot: int) -> Op:
        return (self.rng.choice(["commit", "rollback", "commit"]), slot)

    def _savepoint(self, slot: int) -> Op:
        r = self.rng
        pick = r.random()
        if pick < 0.4 or self.savepoints == 0:
            self.savepoints += 1
            sql = f"savepoint s{self.savepoints}"
        else:
            name = f"s{r.randint(1, self.savepoints)}"
            sql = ("release " if pick < 0.7 else "rollback to ") + name
        return ("execute", slot, self._target(), sql, None, "none")

    def _many(self, slot: int) -> Op:
        r = self.rng
        table = self._table()
        pick = r.random()
        how = r.choice(["list", "gen"])
        if pick < 0.7:
            sql, cols, named = self._insert_sql(table)
            names = [f"p_{c}" for c in cols]
            rows = [self._params(names, [self._column_value(c) for c in cols], named)
                    for _ in range(r.choice([0, 1, 3, 8]))]
        elif pick < 0.85:
            sql = "update big set s = ? where x = ?"
            rows = [(self.value(), r.randrange(BIG_ROWS)) for _ in range(r.randint(0, 4))]
        else:
            sql, rows = f"select * from {table} where id = ?", [(1,), (2,)]
        return ("executemany", slot, self._target(), sql, how, rows)

    def _script(self, slot: int) -> Op:
        r = self.rng
        parts = []
        for _ in range(r.randint(1, 3)):
            op = r.choice([self._dml, self._ddl, self._transaction])(slot)
            sql, params = op[3], op[4]
            if params:
                continue  # scripts take no parameters
            parts.append(sql)
        if r.random() < 0.3:
            parts = ["begin", *parts, r.choice(["commit", "rollback"])]
        if r.random() < 0.15:
            parts.insert(r.randrange(len(parts) + 1), r.choice(_BAD[:3]))
        parts.append("insert into t0(b) values ('script')")
        return ("executescript", slot, self._target(), ";\n".join(parts) + ";")

    def _pragma(self, slot: int) -> Op:
        sql = self.rng.choice([
            "pragma journal_mode", "pragma journal_mode = wal", "pragma synchronous",
            "pragma synchronous = normal", "pragma synchronous = full", "pragma user_version",
            "pragma user_version = 3", "pragma foreign_keys = on", "pragma foreign_keys",
            "pragma table_info(t0)", "pragma cache_size = -4000",
        ])
        return ("execute", slot, self._target(), sql, None, "all")

    def _bad(self, slot: int) -> Op:
        sql = self.rng.choice(_BAD)
        params = None if self.rng.random() < 0.7 else (1,)
        return ("execute", slot, self._target(), sql, params, "all")


_WEIGHTS = {
    "dml": 30, "select": 14, "heavy": 9, "fetch": 6, "ddl": 8, "transaction": 10, "end": 6,
    "savepoint": 4, "many": 6, "script": 3, "pragma": 3, "setting": 3, "bad": 3, "close": 2,
}

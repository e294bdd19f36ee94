"""Database administration through the connection: iterdump, backup and PRAGMAs."""

from __future__ import annotations

import sqlite3

import pytest


@pytest.fixture
def filled(conn):
    """``conn`` with committed tables, an index, a view and a trigger."""
    conn.executescript(
        """
        create table item(id integer primary key, name text, price real, data blob);
        create index item_name on item(name);
        create view cheap as select name from item where price < 2;
        create table log(msg);
        create trigger item_log after insert on item begin
            insert into log values ('added ' || new.name);
        end;
        """
    )
    conn.executemany(
        "insert into item(name, price, data) values (?, ?, ?)",
        [("it's", 1.5, b"\x00\x01"), ("plain", 3.0, None), ("ünï", None, b"")],
    )
    conn.commit()
    return conn


def _contents(conn) -> dict:
    return {
        "item": conn.execute("select * from item order by id").fetchall(),
        "log": conn.execute("select msg from log order by rowid").fetchall(),
        "cheap": conn.execute("select name from cheap").fetchall(),
        "schema": conn.execute(
            "select type, name, sql from sqlite_master order by type, name"
        ).fetchall(),
    }


def test_iterdump_matches_sqlite3(filled, db_path):
    reference = sqlite3.connect(str(db_path))
    try:
        assert list(filled.iterdump()) == list(reference.iterdump())
    finally:
        reference.close()


def test_iterdump_reloads(filled):
    dump = list(filled.iterdump())
    assert dump[0] == "BEGIN TRANSACTION;"
    assert dump[-1] == "COMMIT;"
    copy = sqlite3.connect(":memory:")
    copy.executescript("\n".join(dump))
    assert _contents(copy) == _contents(filled)


def test_iterdump_includes_uncommitted_data(filled):
    filled.execute("insert into item(name) values ('pending')")
    assert any("'pending'" in line for line in filled.iterdump())


def test_backup_to_sqlite3_memory_connection(filled):
    target = sqlite3.connect(":memory:")
    filled.backup(target)
    assert _contents(target) == _contents(filled)


def test_backup_to_sqlite3_file(filled, tmp_path):
    target_path = tmp_path / "copy.db"
    target = sqlite3.connect(str(target_path))
    filled.backup(target)
    target.close()
    reopened = sqlite3.connect(str(target_path))
    assert _contents(reopened) == _contents(filled)
    reopened.close()


def test_backup_to_same_module_connection(filled, connect, tmp_path):
    target = connect(tmp_path / "copy2.db")
    filled.backup(target)
    assert _contents(target) == _contents(filled)


def test_backup_in_pages_with_progress(filled):
    filled.executemany(
        "insert into item(name, data) values (?, ?)", [(f"n{i}", b"x" * 2000) for i in range(200)]
    )
    filled.commit()
    calls = []
    target = sqlite3.connect(":memory:")
    filled.backup(target, pages=5, progress=lambda status, left, total: calls.append(left))
    assert _contents(target) == _contents(filled)
    assert len(calls) > 1
    assert calls[-1] == 0


def test_backup_replaces_target_content(filled):
    target = sqlite3.connect(":memory:")
    target.execute("create table unrelated(x)")
    filled.backup(target)
    names = {r[0] for r in target.execute("select name from sqlite_master")}
    assert "unrelated" not in names
    assert "item" in names


def test_pragma_user_version(conn, observer):
    assert conn.execute("pragma user_version").fetchone() == (0,)
    conn.execute("pragma user_version = 7")
    assert conn.execute("pragma user_version").fetchone() == (7,)
    assert observer.execute("pragma user_version").fetchone() == (7,)


def test_pragma_table_info(filled):
    columns = filled.execute("pragma table_info(item)").fetchall()
    assert [(c[1], c[2], c[5]) for c in columns] == [
        ("id", "INTEGER", 1),
        ("name", "TEXT", 0),
        ("price", "REAL", 0),
        ("data", "BLOB", 0),
    ]


def test_pragma_table_info_description(filled):
    cur = filled.execute("pragma table_info(item)")
    assert [d[0] for d in cur.description] == ["cid", "name", "type", "notnull", "dflt_value", "pk"]


def test_pragma_index_list(filled):
    assert [r[1] for r in filled.execute("pragma index_list(item)")] == ["item_name"]


def test_pragma_function_style(conn):
    conn.execute("create table t(a, b)")
    assert conn.execute("select name from pragma_table_info('t')").fetchall() == [("a",), ("b",)]


def test_pragma_journal_mode_wal(conn, observer):
    assert conn.execute("pragma journal_mode = wal").fetchone() == ("wal",)
    assert observer.execute("pragma journal_mode").fetchone() == ("wal",)


def test_pragma_foreign_keys_enforced(conn):
    conn.execute("pragma foreign_keys = on")
    assert conn.execute("pragma foreign_keys").fetchone() == (1,)
    conn.executescript(
        """
        create table parent(id integer primary key);
        create table child(pid integer references parent(id));
        insert into parent values (1);
        """
    )
    conn.execute("insert into child values (1)")
    conn.commit()
    for _ in range(4):  # repeat: any statement of this connection must see the setting
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
            conn.execute("insert into child values (99)")


def test_pragma_foreign_keys_off_by_default(conn):
    conn.executescript(
        """
        create table parent(id integer primary key);
        create table child(pid integer references parent(id));
        """
    )
    conn.execute("insert into child values (99)")
    conn.commit()
    assert conn.execute("select pid from child").fetchall() == [(99,)]


def test_pragma_integrity_check(filled):
    assert filled.execute("pragma integrity_check").fetchall() == [("ok",)]


def test_pragma_case_sensitive_like(conn):
    assert conn.execute("select 'A' like 'a'").fetchone() == (1,)
    conn.execute("pragma case_sensitive_like = 1")
    for _ in range(4):
        assert conn.execute("select 'A' like 'a'").fetchone() == (0,)


@pytest.mark.parametrize("how", ["execute", "executescript", "isolation_level=None"])
def test_a_new_file_takes_its_page_size_auto_vacuum_and_encoding(connect, db_path, how):
    """These settle when a file gets its first page (DiskCache sets auto_vacuum so): a
    new file must not have one before the application's first write."""
    setup = ["PRAGMA page_size=8192", "PRAGMA auto_vacuum=FULL", "PRAGMA encoding='UTF-16le'",
             "CREATE TABLE t(x)", "INSERT INTO t VALUES ('é')"]
    conn = connect(isolation_level=None) if how == "isolation_level=None" else connect()
    if how == "executescript":
        conn.executescript(";".join(setup))
    else:
        for sql in setup:
            conn.execute(sql)
        conn.commit()
    assert conn.execute("PRAGMA page_size").fetchone() == (8192,)
    assert conn.execute("PRAGMA auto_vacuum").fetchone() == (1,)
    assert conn.execute("PRAGMA encoding").fetchone() == ("UTF-16le",)
    other = connect()
    assert other.execute("SELECT x FROM t").fetchall() == [("é",)]
    with sqlite3.connect(db_path) as plain:
        assert plain.execute("PRAGMA page_size").fetchone() == (8192,)

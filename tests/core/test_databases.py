"""What the connections to one database file share in a process, and how a file is told
apart: by device and inode, never by its name. Seen through ``mpsqlite.pool_status()``."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing

import pytest

import mpsqlite
from mpsqlite import _database, metrics
from tests.core._heavy import BIG, fill_big, offload

pytestmark = pytest.mark.timeout(120)


def _entries(path) -> list[dict]:
    return [s for s in mpsqlite.pool_status() if s["database"] == str(path)]


def _plain_db(path, value: str) -> None:
    with closing(sqlite3.connect(path)) as plain:
        plain.execute("create table big(x integer primary key, s text)")
        plain.executemany("insert into big values (?, ?)", ((i, value) for i in range(BIG)))
        plain.commit()


def test_pool_status_has_one_entry_per_database(mp_connect, db_path, tmp_path):
    first, second = mp_connect(), mp_connect()
    other = mp_connect(tmp_path / "other.db")
    (entry,) = _entries(db_path)
    assert first.pool_status() == second.pool_status() == entry
    assert [other.pool_status()] == _entries(tmp_path / "other.db")


def test_a_database_without_workers_leaves_pool_status_at_its_last_close(db_path):
    conn = mpsqlite.connect(str(db_path), workers=2, coordinate=False)
    conn.execute("create table t(x)")
    conn.commit()
    assert len(_entries(db_path)) == 1
    conn.close()
    assert _entries(db_path) == []


def test_a_connection_per_request_reuses_its_files_entry_and_starts_no_thread(db_path):
    """The gate, group commit and counters of a closed file are kept for the next connect
    (building them is a tenth of a connect), without a thread to expire them."""
    import threading
    before = threading.active_count()
    first = mpsqlite.connect(str(db_path), workers=2)
    first.execute("create table t(x)")
    first.commit()
    kept = first._db
    first.close()
    assert threading.active_count() == before
    second = mpsqlite.connect(str(db_path))
    try:
        assert second._db is kept
        assert second.pool_status()["size"] == (os.cpu_count() or 1)  # sized as a new one
        second.execute("insert into t values (1)")
        second.commit()
        assert metrics.snapshot()[str(db_path)]["caller_writes"] == 2
    finally:
        second.close()


def test_files_kept_idle_without_workers_or_link_are_bounded(tmp_path):
    paths = [tmp_path / f"f{i}.db" for i in range(3 * _database.IDLE_PLAIN)]
    for path in paths:
        with closing(mpsqlite.connect(str(path), coordinate=False)) as conn:
            conn.execute("create table t(x)")
            conn.commit()
    kept = {db.path for db in _database.registry.databases.values()
            if db.refs == 0 and not db.linked and not db.has_workers}  # those linger apart
    assert kept == {str(p) for p in paths[-_database.IDLE_PLAIN:]}  # the most recently closed


def test_files_kept_for_their_writer_queue_link_alone_are_bounded(tmp_path):
    """A written file keeps its link to the other processes' writer queue a while after
    its last close (a relink costs more than the connect), but only a few files do."""
    import threading
    before = threading.active_count()
    paths = [tmp_path / f"f{i}.db" for i in range(3 * _database.IDLE_LINKS)]
    for path in paths:
        with closing(mpsqlite.connect(str(path))) as conn:
            conn._db.gate.turn.engage()  # as if another process wrote it too
            conn.execute("create table t(x)")
            conn.commit()
    kept = [p for p in paths if _entries(p)]
    assert kept == paths[-_database.IDLE_LINKS:]  # the most recently closed
    # each kept link: a coordinator thread (hosted here, nobody else uses these files)
    # and its reader; the reaper
    assert threading.active_count() - before <= 2 * _database.IDLE_LINKS + 1
    mpsqlite.shutdown()
    assert [p for p in paths if _entries(p)] == []


def test_a_live_connection_keeps_reading_its_own_file_after_the_name_is_replaced(
        mp_connect, db_path, tmp_path):
    """sqlite3 keeps a replaced file open: its connection reads the old content. A worker
    standing in for that connection must read the same file, not whatever the name now is."""
    conn = mp_connect()
    fill_big(conn)
    _plain_db(tmp_path / "replacement.db", "new")
    os.replace(tmp_path / "replacement.db", db_path)
    for suffix in ("-wal", "-shm"):  # the replacement must not inherit the old WAL
        os.unlink(f"{db_path}{suffix}")
    sql = "select x, s from big"
    own = [(i, f"s{i}") for i in range(BIG)]
    assert conn.execute(sql).fetchall() == own  # in the caller: its own file
    assert conn.execute(sql).fetchall() == own  # heavy now: wherever it runs, the same file


def test_a_new_file_is_not_taken_for_a_deleted_one_whose_workers_linger(
        tmp_path, monkeypatch):
    """A file deleted after its last close, while its workers linger, frees its inode; a
    new file may get the same number. It is another database all the same."""
    monkeypatch.setattr(_database, "LINGER_SECONDS", 60.0)
    first_path = tmp_path / "first.db"
    first = mpsqlite.connect(str(first_path), workers=1)
    fill_big(first)
    offload(first, "select x, s from big")
    inode = os.stat(first_path).st_ino
    first.close()  # its worker lingers
    first_path.unlink()
    second_path = tmp_path / "second.db"
    second = mpsqlite.connect(str(second_path), workers=1)
    try:
        if os.stat(second_path).st_ino != inode:
            pytest.skip("the file system gave the new file another inode")
        assert second.pool_status()["database"] == str(second_path)
        second.execute("create table big(x integer primary key, s text)")
        second.executemany("insert into big values (?, ?)", ((i, "second") for i in range(BIG)))
        second.commit()
        for _ in range(3):
            rows = second.execute("select x, s from big").fetchall()
            assert len(rows) == BIG and {s for _, s in rows} == {"second"}
        assert not first_path.exists()  # nothing recreated the deleted file
    finally:
        second.close()
        mpsqlite.shutdown()

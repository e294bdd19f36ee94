"""Group commit: in WAL mode a file connection runs at synchronous=NORMAL and a durable
commit returns only after an fsync of the -wal file that began after the commit, shared
with the commits that arrived meanwhile. ``PRAGMA synchronous`` reports the level asked for.

``os.fsync`` is wrapped (only mpsqlite calls it from Python; SQLite syncs in C) to see which
file is synced and to hold a sync open, so that sharing is shown without any timing."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing

import pytest

from tests.core._procs import LockHolder, in_thread, wait_until


#: sqlite3's own execute, for what SQLite itself runs at (mpsqlite answers PRAGMA synchronous).
def _sqlite_execute(con, sql):
    return sqlite3.Cursor(con).execute(sql)  # past mpsqlite's cursor, on 3.10 too


class _Fsyncs:
    """Records the files passed to os.fsync/fdatasync; can hold the next sync until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail_with: OSError | None = None

        def patch(name: str) -> None:
            real = getattr(os, name)

            def sync(fd: int) -> None:
                self.paths.append(os.readlink(f"/proc/self/fd/{fd}"))
                if self.fail_with is not None:
                    raise self.fail_with
                self.entered.set()
                assert self.release.wait(60), "a held fsync was never released"
                real(fd)

            monkeypatch.setattr(os, name, sync)

        patch("fsync")
        if hasattr(os, "fdatasync"):
            patch("fdatasync")

    def hold(self) -> None:
        self.entered.clear()
        self.release.clear()


@pytest.fixture
def fsyncs(monkeypatch):
    return _Fsyncs(monkeypatch)


@pytest.fixture
def conn(mp_connect):
    c = mp_connect(check_same_thread=False)
    c.execute("create table w(id integer primary key, v text)")
    c.commit()
    return c


def test_connection_runs_at_normal_and_reports_the_level_asked_for(conn):
    assert conn.execute("pragma synchronous").fetchone() == (2,)
    assert _sqlite_execute(conn, "pragma synchronous").fetchone() == (1,)
    assert conn.execute("pragma journal_mode").fetchone() == ("wal",)


def test_commit_returns_after_an_fsync_of_the_wal(conn, fsyncs, db_path):
    before = conn.pool_status()
    conn.execute("insert into w(v) values ('a')")
    fsyncs.hold()
    thread, done, errors = in_thread(conn.commit)
    assert fsyncs.entered.wait(30)
    assert not done.is_set()  # commit() waits for the sync
    with closing(sqlite3.connect(db_path)) as observer:  # committed, not yet durable
        assert observer.execute("select v from w").fetchall() == [("a",)]
    fsyncs.release.set()
    thread.join(30)
    assert errors == []
    assert fsyncs.paths == [f"{db_path}-wal"]
    after = conn.pool_status()
    assert after["commits"] - before["commits"] == 1
    assert after["fsyncs"] - before["fsyncs"] == 1


def test_commits_made_during_a_sync_share_the_next_one(conn, mp_connect, fsyncs, db_path):
    others = [mp_connect(check_same_thread=False) for _ in range(3)]
    base = conn.pool_status()
    conn.execute("insert into w(v) values ('first')")
    fsyncs.hold()
    first, _, first_errors = in_thread(conn.commit)
    assert fsyncs.entered.wait(30)
    waiting = []
    for i, other in enumerate(others):
        other.execute("insert into w(v) values (?)", (f"other {i}",))
        waiting.append(in_thread(other.commit))
    wait_until(lambda: conn.pool_status()["commits"] - base["commits"] == 4,
               what="all four commits to wait for durability")
    assert not any(done.is_set() for _, done, _ in waiting)
    fsyncs.release.set()
    for thread, _, errors in [(first, None, first_errors), *waiting]:
        thread.join(30)
        assert not thread.is_alive() and errors == []
    status = conn.pool_status()
    assert status["commits"] - base["commits"] == 4
    assert status["fsyncs"] - base["fsyncs"] == 2  # the held one, then one for the three
    assert fsyncs.paths == [f"{db_path}-wal"] * 2
    with closing(sqlite3.connect(db_path)) as observer:
        assert observer.execute("select count(*) from w").fetchone() == (4,)


@pytest.mark.parametrize(
    ("statements", "fsynced"),
    [
        (["insert into w(v) values ('x')", "commit()"], 1),
        (["insert into w(v) values ('x')", "COMMIT"], 1),
        (["insert into w(v) values ('x')", "rollback()"], 0),
        (["insert into w(v) values ('x')", "ROLLBACK"], 0),
        (["select count(*) from w", "commit()"], 0),
        (["begin", "select count(*) from w", "commit"], 0),
        (["create table u(x)"], 1),
    ],
    ids=["commit()", "COMMIT", "rollback()", "ROLLBACK", "read-only", "read-only-begin", "ddl"],
)
def test_only_what_wrote_and_committed_is_synced(conn, fsyncs, statements, fsynced):
    before = conn.pool_status()["fsyncs"]
    for sql in statements:
        if sql.endswith("()"):
            getattr(conn, sql[:-2])()
        else:
            conn.execute(sql)
    assert not conn.in_transaction
    assert conn.pool_status()["fsyncs"] - before == fsynced
    assert len(fsyncs.paths) == fsynced


def test_autocommit_statements_are_each_durable(mp_connect, fsyncs, db_path):
    conn = mp_connect(isolation_level=None)
    conn.execute("create table w(v)")
    for i in range(3):
        conn.execute("insert into w values (?)", (i,))
    assert [p for p in fsyncs.paths if p.endswith("-wal")] == [str(db_path) + "-wal"] * 4
    assert conn.pool_status()["fsyncs"] == conn.pool_status()["commits"] == 4


def test_a_new_files_switch_to_wal_is_made_durable_by_one_sync_of_the_file(
        mp_connect, fsyncs, db_path):
    assert not db_path.exists()
    conn = mp_connect()
    # Nothing written yet: the file has no page, as under sqlite3 (page_size still applies).
    assert conn.execute("pragma journal_mode").fetchone() == ("delete",)
    assert fsyncs.paths == []
    conn.execute("create table t(x)")  # switched first, then a durable commit in WAL
    assert conn.execute("pragma journal_mode").fetchone() == ("wal",)
    assert fsyncs.paths == [str(db_path), str(db_path) + "-wal"]
    assert conn.execute("pragma synchronous").fetchone() == (2,)
    assert _sqlite_execute(conn, "pragma synchronous").fetchone() == (1,)  # group commit
    conn.close()
    fsyncs.paths.clear()
    assert mp_connect().execute("pragma journal_mode").fetchone() == ("wal",)
    assert fsyncs.paths == []  # an existing WAL file: nothing to switch


def _created_in(folder, action) -> list[str]:
    """Names of the files created in ``folder`` while ``action()`` runs (Linux inotify:
    SQLite opens its files in C, where no Python hook sees them)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    in_create, in_nonblock = 0x100, 0o4000
    fd = libc.inotify_init1(in_nonblock)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(folder), in_create) < 0:
        pytest.fail(f"inotify failed: {os.strerror(ctypes.get_errno())}")
    try:
        action()
        names, data = [], b""
        while True:
            try:
                data += os.read(fd, 65536)
            except BlockingIOError:
                break
        while data:  # struct inotify_event: wd, mask, cookie, len, name[len]
            length = int.from_bytes(data[12:16], "little")
            names.append(data[16:16 + length].rstrip(b"\0").decode())
            data = data[16 + length:]
        return names
    finally:
        os.close(fd)


def test_a_new_files_switch_to_wal_makes_no_rollback_journal(mp_connect, db_path):
    """The header of a new file is written under an in-memory journal (an unsynced
    journal file would protect nothing): only the file, its -wal and -shm appear."""
    def first_file() -> None:
        conn = mp_connect()
        conn.execute("create table t(x)")
        assert conn.execute("pragma journal_mode").fetchone() == ("wal",)

    created = _created_in(db_path.parent, first_file)
    assert sorted(created) == sorted(db_path.name + end for end in ("", "-wal", "-shm"))


def test_a_new_file_whose_switch_fails_keeps_its_journal_mode(mp_connect, db_path):
    """Another process's write lock on the new file refuses the switch: the connection is left
    in the rollback-journal mode it had, not in the in-memory one the switch used, and its
    next write, once the lock is gone, switches."""
    db_path.touch()
    holder = LockHolder(db_path, "begin immediate")
    try:
        conn = mp_connect(timeout=0.1)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            conn.execute("create table t(x)")
        assert _sqlite_execute(conn, "pragma journal_mode").fetchone() == ("delete",)
    finally:
        holder.release()
    conn.execute("create table t(x)")
    assert _sqlite_execute(conn, "pragma journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize(
    ("level", "reported", "fsynced"),
    [("FULL", 2, 1), ("2", 2, 1), ("EXTRA", 3, 1), ("NORMAL", 1, 0), ("OFF", 0, 0)],
)
def test_synchronous_levels(conn, fsyncs, level, reported, fsynced):
    conn.execute(f"pragma synchronous = {level}")
    assert conn.execute("pragma synchronous").fetchone() == (reported,)
    conn.execute("insert into w(v) values ('x')")
    conn.commit()
    assert len(fsyncs.paths) == fsynced


def test_a_level_refused_inside_a_transaction_is_not_kept(conn, fsyncs):
    conn.execute("insert into w(v) values ('x')")
    with pytest.raises(sqlite3.OperationalError, match="may not be changed inside a transaction"):
        conn.execute("pragma synchronous = OFF")  # sqlite3's own refusal
    conn.commit()
    assert conn.execute("pragma synchronous").fetchone() == (2,)
    assert len(fsyncs.paths) == 1  # still durable


def test_without_group_commit_sqlite_syncs_itself(mp_connect, fsyncs):
    conn = mp_connect(group_commit=False)
    assert _sqlite_execute(conn, "pragma synchronous").fetchone() == (2,)
    conn.execute("pragma synchronous = FULL")
    conn.execute("create table w(x)")
    conn.execute("insert into w values (1)")
    conn.commit()
    status = conn.pool_status()
    wal_syncs = [p for p in fsyncs.paths if p.endswith("-wal")]
    assert (status["commits"], status["fsyncs"], wal_syncs) == (0, 0, [])
    assert conn.execute("pragma synchronous").fetchone() == (2,)


def test_a_failed_sync_is_reported_by_commit(conn, fsyncs):
    conn.execute("insert into w(v) values ('x')")
    fsyncs.fail_with = OSError(errno.EIO, "Input/output error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        conn.commit()
    fsyncs.fail_with = None
    assert not conn.in_transaction
    conn.execute("insert into w(v) values ('y')")  # the connection goes on
    conn.commit()


def test_many_writers_all_commit_durably(mp_connect, mpsqlite, db_path):
    setup = mp_connect()
    setup.execute("create table w(v)")
    setup.commit()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with closing(mpsqlite.connect(str(db_path), workers=2)) as c:
                for _ in range(20):
                    c.execute("insert into w values ('x')")
                    c.commit()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    status = setup.pool_status()
    assert status["commits"] >= 120
    assert 0 < status["fsyncs"] <= status["commits"]
    with closing(sqlite3.connect(db_path)) as observer:
        assert observer.execute("select count(*) from w").fetchone() == (120,)


def test_synchronous_of_an_attached_database_leaves_main_alone(conn, fsyncs, tmp_path):
    """``PRAGMA aux.synchronous`` sets aux's level, as in sqlite3; main stays durable."""
    conn.execute("attach database ? as aux", (str(tmp_path / "aux.db"),))
    conn.execute("pragma aux.synchronous = OFF")
    assert conn.execute("pragma main.synchronous").fetchone() == (2,)
    assert _sqlite_execute(conn, "pragma aux.synchronous").fetchone() == (0,)
    conn.execute("insert into w(v) values ('x')")
    conn.commit()
    assert len(fsyncs.paths) == 1  # main's commit was made durable


def test_leaving_wal_mode_gives_sqlite_back_its_own_durability(conn, fsyncs, db_path):
    """After ``PRAGMA journal_mode=DELETE`` there is no WAL to sync: SQLite must sync itself
    at the level asked for (FULL), not stay at the NORMAL that group commit relied on."""
    synced_before = conn.pool_status()["fsyncs"]  # the fixture's own commit
    assert conn.execute("pragma journal_mode = delete").fetchone() == ("delete",)
    conn.execute("insert into w(v) values ('x')")
    conn.commit()
    assert not os.path.exists(f"{db_path}-wal")
    assert _sqlite_execute(conn, "pragma synchronous").fetchone() == (2,)
    assert conn.execute("pragma synchronous").fetchone() == (2,)
    # no sync counted that was not made
    assert conn.pool_status()["fsyncs"] - synced_before == len(fsyncs.paths) == 0


_needs_blobopen = pytest.mark.skipif(not hasattr(sqlite3.Connection, "blobopen"),
                                     reason="Connection.blobopen exists from Python 3.11")


@_needs_blobopen
def test_a_blob_written_outside_a_transaction_is_synced_by_sqlite(conn):
    """SQLite commits what such a blob writes as it closes, where group commit cannot see
    it: until it has closed SQLite runs at the level asked for and syncs that commit itself.
    The next write after the close is group commit's again."""
    conn.execute("insert into w(id, v) values (1, zeroblob(8))")
    conn.commit()
    with conn.blobopen("w", "v", 1, readonly=True) as blob:
        assert blob.read() == bytes(8)
        assert _sqlite_execute(conn, "pragma synchronous").fetchone() == (1,)  # reads only
    with conn.blobopen("w", "v", 1) as blob:
        assert _sqlite_execute(conn, "pragma synchronous").fetchone() == (2,)
        assert conn.execute("pragma synchronous").fetchone() == (2,)
        blob.write(b"12345678")
    assert conn.execute("select v from w where id = 1").fetchone() == (b"12345678",)
    conn.execute("insert into w(v) values ('next')")
    conn.commit()
    assert _sqlite_execute(conn, "pragma synchronous").fetchone() == (1,)


@_needs_blobopen
def test_a_blob_written_inside_a_transaction_is_synced_by_its_commit(conn, fsyncs, db_path):
    conn.execute("insert into w(id, v) values (1, zeroblob(8))")
    conn.commit()
    fsyncs.paths.clear()
    conn.execute("begin")
    with conn.blobopen("w", "v", 1) as blob:
        blob.write(b"abcdefgh")
    conn.commit()
    assert fsyncs.paths == [f"{db_path}-wal"]
    assert conn.execute("select v from w where id = 1").fetchone() == (b"abcdefgh",)


def test_pragma_incremental_vacuum_is_a_durable_write(mp_connect, fsyncs, db_path):
    """It frees pages of the file in a transaction of its own, so it queues in the gate and
    its commit is synced, as any write's."""
    conn = mp_connect()
    conn.execute("pragma auto_vacuum = incremental")
    conn.execute("vacuum")
    conn.execute("create table big(x)")
    conn.executemany("insert into big values (randomblob(1000))", [()] * 200)
    conn.commit()
    conn.execute("delete from big")
    conn.commit()
    free = conn.execute("pragma freelist_count").fetchone()[0]
    assert free > 10
    fsyncs.paths.clear()
    conn.execute("pragma incremental_vacuum").fetchall()
    assert conn.execute("pragma freelist_count").fetchone()[0] < free  # 1 page, as in sqlite3
    assert fsyncs.paths == [f"{db_path}-wal"]


@pytest.mark.parametrize("setter", ["isolation_level", "autocommit"])
def test_a_setter_that_commits_makes_an_ungated_write_durable(conn, mp_connect, fsyncs,
                                                              db_path, setter):
    """A write the gate let through on timeout (SQLite's lock was free) is made durable
    when sqlite3 commits it because ``isolation_level = None`` or ``autocommit = True``
    (sqlite3 commits through the connection's commit() method)."""
    if setter == "autocommit" and sys.version_info < (3, 12):
        pytest.skip("Connection.autocommit exists from Python 3.12")
    holder = mp_connect()
    holder.execute("begin")  # holds the gate, not SQLite's write lock
    writer = mp_connect(timeout=0.05)
    writer.execute("insert into w(v) values ('through')")
    assert writer.in_transaction
    fsyncs.paths.clear()
    setattr(writer, setter, None if setter == "isolation_level" else True)
    assert not writer.in_transaction
    assert fsyncs.paths == [f"{db_path}-wal"]
    holder.rollback()


def _gathered(tmp_path, monkeypatch, fsync_seconds: float) -> tuple[int, int]:
    """Two commits: the first leads while another writer holds the gate, which commits a
    moment later. (commits, fsyncs) of the second round, after a first fsync that took
    ``fsync_seconds`` (a slow disk is a sleep in fdatasync, as bench's slowdisk shim)."""
    import time

    from mpsqlite import _durability

    wal = tmp_path / "x.db-wal"
    wal.write_bytes(b"frames")
    real = os.fdatasync

    def fdatasync(fd):
        time.sleep(fsync_seconds)
        real(fd)

    monkeypatch.setattr(_durability.os, "fdatasync", fdatasync)
    in_gate = threading.Event()
    sync = _durability.GroupSync(str(wal), in_gate.is_set)
    sync.wait_durable()  # times the disk
    before = sync.fsyncs
    in_gate.set()

    def other_writer():
        # once the leader waits for it, or has synced without it
        wait_until(lambda: sync._gathering or sync.fsyncs > before, what="the leader")
        in_gate.clear()  # its commit is written: it leaves the gate and waits to be durable
        sync.wait_durable()

    other = threading.Thread(target=other_writer)
    other.start()
    sync.wait_durable()
    other.join()
    return sync.commits - 1, sync.fsyncs - before


def test_after_a_slow_fsync_the_leader_waits_for_the_writer_in_the_gate(tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr("mpsqlite._durability.MAX_DELAY", 5.0)  # it ends when the writer comes
    assert _gathered(tmp_path, monkeypatch, 0.005) == (2, 1)


def test_after_a_fast_fsync_the_leader_does_not_wait(tmp_path, monkeypatch):
    monkeypatch.setattr("mpsqlite._durability.MAX_DELAY", 5.0)  # a wait would be seen
    # "Fast" is below SLOW_FSYNC; a first fdatasync of a new file can take 1 ms here.
    monkeypatch.setattr("mpsqlite._durability.SLOW_FSYNC", 1.0)
    assert _gathered(tmp_path, monkeypatch, 0.0) == (2, 2)


def _wal_descriptors(db_path) -> list[str]:
    """What group commit's descriptors of ``db_path``'s WAL point to: those open read-only
    (SQLite's own are open for writing)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            with open(f"/proc/self/fdinfo/{fd}") as info:
                flags = next(int(line.split()[1], 8) for line in info
                             if line.startswith("flags:"))
        except (OSError, StopIteration):
            continue
        if target.startswith(f"{db_path}-wal") and flags & os.O_ACCMODE == os.O_RDONLY:
            found.append(target)
    return found


def test_the_wal_is_opened_once_for_many_commits(conn, db_path, monkeypatch):
    opened = []
    real = os.open

    def counting_open(path, *args, **kwargs):
        opened.append(os.fspath(path))
        return real(path, *args, **kwargs)

    from mpsqlite import _durability

    monkeypatch.setattr(_durability.os, "open", counting_open)
    for i in range(20):
        conn.execute("insert into w(v) values (?)", (str(i),))
        conn.commit()
    assert conn.pool_status()["fsyncs"] >= 20
    assert opened.count(f"{db_path}-wal") <= 1


def test_a_new_wal_after_a_change_of_journal_mode_is_the_one_synced(conn, db_path, fsyncs):
    conn.execute("insert into w(v) values ('in the first wal')")
    conn.commit()
    assert conn.execute("pragma journal_mode=delete").fetchone() == ("delete",)
    assert not os.path.exists(f"{db_path}-wal")
    assert conn.execute("pragma journal_mode=wal").fetchone() == ("wal",)
    fsyncs.paths.clear()
    conn.execute("insert into w(v) values ('in the second')")
    conn.commit()
    assert fsyncs.paths == [f"{db_path}-wal"]  # not "... (deleted)"


def test_the_wal_is_let_go_at_the_last_close_and_the_new_one_synced(mp_connect, db_path,
                                                                     fsyncs):
    first = mp_connect()
    first.execute("create table w(id integer primary key, v text)")
    first.commit()
    assert _wal_descriptors(db_path) == [f"{db_path}-wal"]
    first.close()  # SQLite checkpoints and removes the WAL
    assert not os.path.exists(f"{db_path}-wal")
    assert _wal_descriptors(db_path) == []
    second = mp_connect()
    fsyncs.paths.clear()
    second.execute("insert into w(v) values ('after')")
    second.commit()
    assert fsyncs.paths == [f"{db_path}-wal"]
    second.close()


def test_another_process_closing_leaves_the_wal_that_is_synced(conn, db_path, fsyncs):
    conn.execute("insert into w(v) values ('here')")
    conn.commit()
    code = ("import sqlite3, sys; d = sqlite3.connect(sys.argv[1]); "
            "d.execute(\"insert into w(v) values ('there')\"); d.commit(); d.close()")
    subprocess.run([sys.executable, "-c", code, str(db_path)], check=True, timeout=60)
    # This process's open connection keeps SQLite from removing the WAL at that close.
    assert os.path.exists(f"{db_path}-wal")
    fsyncs.paths.clear()
    conn.execute("insert into w(v) values ('here again')")
    conn.commit()
    assert fsyncs.paths == [f"{db_path}-wal"]


def test_a_forked_child_closes_its_parents_wal_descriptor(conn, db_path):
    conn.execute("insert into w(v) values ('parent')")
    conn.commit()
    assert _wal_descriptors(db_path) == [f"{db_path}-wal"]
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_fd)
            os.write(write_fd, repr(_wal_descriptors(db_path)).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        seen = pipe.read()
    os.waitpid(child, 0)
    assert seen == "[]"
    assert _wal_descriptors(db_path) == [f"{db_path}-wal"]  # the parent's stays

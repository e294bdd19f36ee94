"""Several processes writing one file share one writer queue (mpsqlite._coord), with real
processes: pair writes from 4 processes x 8 threads beside a plain sqlite3 writer, the
coordinator's process killed mid-write, a process that hangs holding the turn, forks."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest

import mpsqlite
from mpsqlite import _coord, _database

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(_coord._PEERCRED is None, reason="needs SO_PEERCRED")]

CHILD = Path(__file__).with_name("_coord_child.py")


def _make_db(path: Path) -> None:
    with closing(sqlite3.connect(path)) as con:
        con.execute("pragma journal_mode=wal")
        con.execute("create table pairs(pid, thread, n, half, primary key(pid, thread, n, half))")
        con.commit()


def _start(db: Path, out: Path, threads: int, side: str = "mp") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), str(db), str(out), str(threads), side])


def _wait_for(predicate, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _acks(out: Path) -> list[tuple[int, int, int]]:
    path = Path(f"{out}.acks")
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()
            if len(line.split()) == 3]


def _check_pairs(db: Path, acked: list[tuple[int, int, int]]) -> None:
    """Every acknowledged commit is there, whole; no transaction is there by half."""
    with closing(sqlite3.connect(db)) as con:
        halves = con.execute("select pid, thread, n, group_concat(half, '') from "
                             "(select * from pairs order by half) group by pid, thread, n"
                             ).fetchall()
    present = {(p, t, n): h for p, t, n, h in halves}
    assert all(h == "ab" for h in present.values()), "a transaction was committed by half"
    missing = [a for a in acked if a not in present]
    assert missing == [], f"{len(missing)} acknowledged commits are missing"


def _stop_all(outs: list[Path], procs: list[subprocess.Popen]) -> list[dict]:
    for out in outs:
        Path(f"{out}.stop").touch()
    for proc in procs:
        proc.wait(timeout=120)
    return [json.loads(Path(f"{out}.json").read_text()) for out in outs]


def test_four_processes_of_eight_threads_and_a_plain_writer_share_one_queue(tmp_path):
    db = tmp_path / "pairs.db"
    _make_db(db)
    outs = [tmp_path / f"mp{i}" for i in range(4)] + [tmp_path / "plain"]
    procs = [_start(db, out, 8) for out in outs[:4]] + [_start(db, outs[4], 2, "plain")]
    _wait_for(lambda: all(len(_acks(out)) >= 20 for out in outs))
    time.sleep(1.0)
    summaries = _stop_all(outs, procs)
    assert [p.returncode for p in procs] == [0] * 5
    assert [s["errors"] for s in summaries] == [[]] * 5
    # each mpsqlite process got the turn from the coordinator, one of them hosting it
    assert all(s["handoffs"] > 0 for s in summaries[:4])
    assert sum(Path(f"{out}.host").exists() for out in outs[:4]) == 1
    _check_pairs(db, [a for out in outs for a in _acks(out)])


def test_the_coordinators_process_killed_mid_write_loses_no_commit(tmp_path):
    db = tmp_path / "pairs.db"
    _make_db(db)
    outs = [tmp_path / f"mp{i}" for i in range(4)]
    procs = [_start(db, out, 4) for out in outs]
    _wait_for(lambda: any(Path(f"{o}.host").exists() for o in outs)
              and all(len(_acks(o)) >= 20 for o in outs))
    (host,) = [i for i, o in enumerate(outs) if Path(f"{o}.host").exists()]
    os.kill(procs[host].pid, signal.SIGKILL)
    procs[host].wait()
    killed_at = time.time()
    survivors = [i for i in range(4) if i != host]
    counts = {i: len(_acks(outs[i])) for i in survivors}
    # another process takes over, and every survivor goes on committing
    _wait_for(lambda: any(Path(f"{outs[i]}.host").exists() for i in survivors))
    _wait_for(lambda: all(len(_acks(outs[i])) > counts[i] + 20 for i in survivors))
    took_over = min(float(Path(f"{outs[i]}.host").read_text()) for i in survivors
                    if Path(f"{outs[i]}.host").exists())
    print(f"takeover {1000 * (took_over - killed_at):.1f} ms after the kill")
    summaries = _stop_all([outs[i] for i in survivors], [procs[i] for i in survivors])
    assert [s["errors"] for s in summaries] == [[]] * 3
    _check_pairs(db, [a for out in outs for a in _acks(out)])


def test_a_process_that_hangs_holding_the_turn_is_passed_over_after_max_write_seconds(
        tmp_path):
    """A linked process that holds the turn and stops answering (here: a peer on the
    real socket that asks for the turn and then never reads) loses it after the
    ``max_write_seconds`` it sent, and the writers behind it go on."""
    db = tmp_path / "hang.db"
    _make_db(db)
    con = mpsqlite.connect(str(db), timeout=60)
    con._db.gate.turn.engage()  # as if it had met another process's writes
    con.execute("insert into pairs values (0, 0, 0, 'a')")  # this process hosts
    con.commit()
    coordinator = con._db.gate.turn._coordinator
    with socket.socket(socket.AF_UNIX) as hung:
        hung.connect(coordinator.sock_path)
        hung.sendall(b"W 1 0.5\n")
        assert hung.recv(16) == b"G 1 0\n"  # it holds the turn, then hangs
        con.execute("insert into pairs values (0, 0, 1, 'a')")  # waits for the turn
        con.commit()
        assert coordinator.revoked == 1  # taken back, not timed out
        assert con._db.gate.timeouts == 0
        hung.settimeout(10)
        said = b""
        while not said.endswith(b"X 1\n"):
            said += hung.recv(16)
        assert said == b"P\nX 1\n"  # asked to pass it on, then told it was taken
    con.close()
    with closing(sqlite3.connect(db)) as plain:
        assert plain.execute("select count(*) from pairs").fetchone() == (2,)


_FORK = textwrap.dedent("""
    import os, sys, time, mpsqlite
    from mpsqlite import _database
    con = mpsqlite.connect(sys.argv[1])
    con._db.gate.turn.engage()  # as if it had met another process's writes
    con.execute("insert into pairs values (0, 0, 0, 'a')")
    con.commit()
    db = con._db
    con.close()  # SQLite connections must not cross a fork; the file's link lingers
    class Writer:  # what the gate asks of a holder; stands for a transaction in progress
        _max_write = None
        def _revoke_write(self, held):
            pass
    writer = Writer()
    db.gate.acquire(writer, 5)  # the gate, and with it the file's turn, held across the fork
    turn = db.gate.turn
    assert turn.hosting and turn.held
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # as a gunicorn worker after --preload: its own connections
        child = mpsqlite.connect(sys.argv[1])
        mine = child._db.gate.turn
        ok = mine is not turn and not mine.held and not mine.linked and not mine.hosting
        mine.engage()
        child.execute("insert into pairs values (1, 0, 1, 'a')")  # waits for the parent
        done = time.monotonic()
        child.commit()
        released = float(os.read(read, 64))
        for n in range(2, 101):
            child.execute("insert into pairs values (1, 0, ?, 'a')", (n,))
            child.commit()
        os._exit(0 if ok and done > released and mine.handoffs > 0 and not mine.hosting
                 else 3)
    time.sleep(0.3)
    os.write(write, repr(time.monotonic()).encode())
    db.gate.release(writer)
    con = mpsqlite.connect(sys.argv[1])
    for n in range(1, 101):
        con.execute("insert into pairs values (2, 0, ?, 'a')", (n,))
        con.commit()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert con._db is db and turn.hosting and turn._coordinator.grants >= 3
""")


def test_a_forked_child_never_uses_its_parents_link_turn_or_coordinator(tmp_path):
    db = tmp_path / "fork.db"
    _make_db(db)
    run = subprocess.run([sys.executable, "-c", _FORK, str(db)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with closing(sqlite3.connect(db)) as plain:
        assert plain.execute("select pid, count(*) from pairs group by pid").fetchall() == [
            (0, 1), (1, 100), (2, 100)]


def test_the_socket_is_private_and_speaks_only_its_protocol(tmp_path):
    db = tmp_path / "private.db"
    _make_db(db)
    with closing(mpsqlite.connect(str(db))) as con:
        con._db.gate.turn.engage()
        con.execute("insert into pairs values (0, 0, 0, 'a')")
        con.commit()
        turn = con._db.gate.turn
        coordinator = turn._coordinator
        path = coordinator.sock_path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        with socket.socket(socket.AF_UNIX) as rogue:
            rogue.connect(path)
            rogue.sendall(pickle.dumps(("W", 1)) + b"\n")
            assert rogue.recv(16) == b""  # dropped, not unpickled
        with socket.socket(socket.AF_UNIX) as other:  # a well-behaved peer is served
            other.connect(path)
            assert not turn.held  # given back when our transaction ended
            other.sendall(b"W 7 -\n")
            assert other.recv(16) == b"G 7 0\n"
            other.sendall(b"R 7\n")
            con.execute("insert into pairs values (0, 0, 1, 'a')")
            assert turn.held
            con.commit()
    # the last close with nobody else linked: the coordinator stopped, its files removed
    _database.registry.shutdown()
    assert not os.path.exists(path)


def test_a_process_that_writes_alone_never_links(tmp_path):
    """No other writer, no coordinator: no socket, no thread, nothing per transaction."""
    import gc
    import threading
    db = tmp_path / "alone.db"
    _make_db(db)
    gc.collect()
    mpsqlite.pool_status()  # earlier tests' collected connections let go (a reaper may start)
    before = set(threading.enumerate())
    with closing(mpsqlite.connect(str(db))) as con:
        for n in range(50):
            con.execute("insert into pairs values (0, 0, ?, 'a')", (n,))
            con.commit()
        turn = con._db.gate.turn
        assert (turn.engaged, turn.linked, turn.handoffs) == (False, False, 0)
    # none started (an earlier test's reaper may have ended meanwhile)
    assert set(threading.enumerate()) - before == set()


def test_a_new_files_first_write_is_no_sign_of_another_writer(tmp_path):
    """That write also opens the WAL just switched to, which takes longer than a write that
    waited for another process's lock would (BUSY_HINT): it must not engage the turn."""
    with closing(mpsqlite.connect(str(tmp_path / "new.db"))) as con:
        con.execute("create table t(x)")
        con.execute("insert into t values (1)")
        con.commit()
        turn = con._db.gate.turn
        assert (turn.engaged, turn.linked) == (False, False)


def test_a_write_that_waited_for_another_processes_lock_joins_the_queue(tmp_path):
    db = tmp_path / "met.db"
    _make_db(db)
    other = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sqlite3, sys, time
        con = sqlite3.connect(sys.argv[1], isolation_level=None)
        con.execute("begin immediate")  # another process holds SQLite's write lock
        print("locked", flush=True)
        time.sleep(0.3)
        con.execute("commit")
    """), str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "locked\n"
        with closing(mpsqlite.connect(str(db), timeout=30)) as con:
            turn = con._db.gate.turn
            assert not turn.engaged
            con.execute("insert into pairs values (0, 0, 0, 'a')")  # waits for its lock
            con.commit()
            assert turn.engaged and not turn.held  # queued from now on; given back
            con.execute("insert into pairs values (0, 0, 1, 'a')")
            assert turn.held and turn.hosting  # through the coordinator (hosted here)
            con.commit()
    finally:
        assert other.wait(timeout=60) == 0

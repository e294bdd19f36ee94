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


_HANG = textwrap.dedent("""
    import os, signal, sys, time, mpsqlite
    con = mpsqlite.connect(sys.argv[1], max_write_seconds=0.5)
    con.execute("insert into pairs values (1, 0, 0, 'a')")
    con.commit()
    assert con._db.gate.turn.held  # kept after the commit: nobody else asked yet
    open(sys.argv[2], "w").close()
    os.kill(os.getpid(), signal.SIGSTOP)  # hangs, holding the turn
    deadline = time.monotonic() + 30
    while con._db.gate.turn.held:  # resumed: it learns the turn was taken back
        assert time.monotonic() < deadline
        time.sleep(0.01)
""")


def test_a_process_that_hangs_holding_the_turn_is_passed_over_after_max_write_seconds(
        tmp_path):
    db = tmp_path / "hang.db"
    _make_db(db)
    con = mpsqlite.connect(str(db), timeout=60)
    con.execute("insert into pairs values (0, 0, 0, 'a')")  # this process hosts
    con.commit()
    turn = con._db.gate.turn
    assert turn.hosting
    coordinator = turn._coordinator
    ready = tmp_path / "ready"
    hung = subprocess.Popen([sys.executable, "-c", _HANG, str(db), str(ready)])
    try:
        _wait_for(lambda: ready.exists())
        _wait_for(lambda: not turn.held)  # it asked, we gave the turn on
        con.execute("insert into pairs values (0, 0, 1, 'a')")
        con.commit()
        assert coordinator.revoked == 1  # it never answered: taken back, not timed out
        assert con._db.gate.timeouts == 0
    finally:
        hung.send_signal(signal.SIGCONT)
        assert hung.wait(timeout=60) == 0
        con.close()
    with closing(sqlite3.connect(db)) as plain:
        assert plain.execute("select count(*) from pairs").fetchone() == (3,)


_FORK = textwrap.dedent("""
    import os, sys, mpsqlite
    con = mpsqlite.connect(sys.argv[1], check_same_thread=False)
    con.execute("insert into pairs values (0, 0, 0, 'a')")
    con.commit()
    turn = con._db.gate.turn
    assert turn.held and turn.hosting
    pid = os.fork()
    if pid == 0:
        mine = con._db.gate.turn
        ok = not mine.held and not mine.linked and not mine.hosting and not con._db.has_workers
        for n in range(1, 101):
            con.execute("insert into pairs values (1, 0, ?, 'a')", (n,))
            con.commit()
        os._exit(0 if ok and mine.handoffs > 0 and not mine.hosting else 3)
    for n in range(1, 101):
        con.execute("insert into pairs values (2, 0, ?, 'a')", (n,))
        con.commit()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert turn.hosting and turn._coordinator.grants >= 2
    con.execute("insert into pairs values (2, 0, 0, 'a')")  # still coordinated
    con.commit()
""")


def test_a_forked_child_never_uses_its_parents_link_turn_or_coordinator(tmp_path):
    db = tmp_path / "fork.db"
    _make_db(db)
    run = subprocess.run([sys.executable, "-c", _FORK, str(db)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with closing(sqlite3.connect(db)) as plain:
        assert plain.execute("select pid, count(*) from pairs group by pid").fetchall() == [
            (0, 1), (1, 100), (2, 101)]


def test_the_socket_is_private_and_speaks_only_its_protocol(tmp_path):
    db = tmp_path / "private.db"
    _make_db(db)
    with closing(mpsqlite.connect(str(db))) as con:
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
            assert turn.held  # kept since our commit: nobody else asked
            other.sendall(b"W 7 -\n")
            assert other.recv(16) == b"G 7\n"  # asked, we gave it on: we were not writing
            assert not turn.held
            other.sendall(b"R 7\n")
            con.execute("insert into pairs values (0, 0, 1, 'a')")
            con.commit()
            assert turn.held
    # the last close with nobody else linked: the coordinator stopped, its files removed
    _database.registry.shutdown()
    assert not os.path.exists(path)

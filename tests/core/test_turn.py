"""The short-read turn (mpsqlite._turn): once readers of the process have met in SQLite,
short reads take a process-wide turn for their Python and their call into SQLite; a
thread alone never takes it, long reads leave it, and nothing a caller sees changes."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager

import pytest

from mpsqlite import _turn
from mpsqlite._sql import kind
from tests.core._heavy import mark_heavy

pytestmark = pytest.mark.timeout(120)

#: Pure SQL that keeps SQLite busy for tens of milliseconds (GIL released meanwhile).
_SLOW = ("with recursive c(n) as (select 1 union all select n + 1 from c where n < 200000) "
         "select count(*) from c")
_SLOW_ROW = (200000,)
_POINT = "select x, s from t where x = ?"
_SHIPPED_CONTENDED = _turn.CONTENDED  # as imported, before any test changed it


@pytest.fixture
def conn(mp_connect):
    c = mp_connect()
    c.execute("create table t(x integer primary key, s text)")
    c.executemany("insert into t values (?, ?)", ((i, f"s{i}") for i in range(200)))
    c.commit()
    kind(_POINT), kind(_SLOW)  # known as reads before they run, as after a first run
    return c


@pytest.fixture(autouse=True)
def enabled(monkeypatch):
    """The turn as it runs when enabled (it is off by default, see mpsqlite._turn)."""
    monkeypatch.setattr(_turn, "CONTENDED", 256)


@pytest.fixture
def takes(monkeypatch):
    """Counts the times a read took the turn (or tried to), from now on."""
    seen = []
    real = _turn.take

    def counting():
        turn = real()
        seen.append(turn is not None)
        return turn

    monkeypatch.setattr(_turn, "take", counting)
    monkeypatch.setattr(_turn, "contended", 0)
    return seen


@pytest.fixture
def contended(monkeypatch, takes):
    """Every read runs as under contention (the count never runs out in a test, nor when
    a read finds the turn taken, which sets it back to CONTENDED)."""
    monkeypatch.setattr(_turn, "CONTENDED", 10**9)
    monkeypatch.setattr(_turn, "contended", 10**9)
    return takes


@contextmanager
def _held_by_another_thread():
    """Another thread holds the turn until the block ends."""
    held, done = threading.Event(), threading.Event()

    def holder():
        with _turn.lock:
            held.set()
            done.wait(60)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(60)
    try:
        yield
    finally:
        done.set()
        t.join()


def _long_reads(conn):
    return conn._db.long_reads


def test_a_thread_alone_never_takes_the_turn(conn, takes):
    idle = threading.Event()
    other = threading.Thread(target=idle.wait)  # a thread that does not read
    other.start()
    try:
        for i in range(2000):
            assert conn.execute(_POINT, (i % 200,)).fetchone() == (i % 200, f"s{i % 200}")
        assert conn.execute(_SLOW).fetchone() == _SLOW_ROW
    finally:
        idle.set()
        other.join()
    assert takes == []
    assert _turn.contended == 0


def _two_readers_meet_in_sqlite(mp_connect, tries=1):
    """Two threads read at once, up to ``tries`` times until the turn starts: on a loaded
    machine one may not be scheduled at all while the other is in SQLite."""
    conns = [mp_connect(check_same_thread=False) for _ in range(2)]
    for _ in range(tries):
        start = threading.Barrier(2)
        results = []

        def slow(c, start=start, results=results):
            start.wait()
            results.append(c.execute(_SLOW).fetchone())

        threads = [threading.Thread(target=slow, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [_SLOW_ROW, _SLOW_ROW]
        if _turn.contended:
            return


def test_by_default_readers_that_meet_do_not_start_the_turn(mp_connect, conn, takes,
                                                             monkeypatch):
    monkeypatch.setattr(_turn, "CONTENDED", _SHIPPED_CONTENDED)
    _two_readers_meet_in_sqlite(mp_connect)
    assert _turn.contended == 0
    for i in range(50):
        assert conn.execute(_POINT, (i,)).fetchone() == (i, f"s{i}")
    assert takes == []


def test_two_readers_in_sqlite_at_once_start_the_turn(mp_connect, conn, takes):
    _two_readers_meet_in_sqlite(mp_connect, tries=5)
    assert _turn.contended == _turn.CONTENDED
    assert conn.execute(_POINT, (7,)).fetchone() == (7, "s7")
    assert takes and all(takes)
    assert _turn.contended < _turn.CONTENDED  # it runs out once no other reader is seen


def test_reads_in_the_turn_from_many_threads_see_what_sqlite3_sees(
        mp_connect, conn, db_path, contended, monkeypatch):
    # Every read takes the turn. On a loaded machine a holder descheduled for TURN_WAIT
    # would let the next read run beside it (test_a_read_waits_for_the_turn_only_so_long),
    # and one preempted, or charged a hypervisor's steal, past LONG_CPU would leave it for
    # a while (test_a_long_read_leaves_the_turn_and_backs_off).
    monkeypatch.setattr(_turn, "TURN_WAIT", 60.0)
    monkeypatch.setattr(_turn, "LONG_WALL", 60.0)
    conns = [mp_connect(check_same_thread=False) for _ in range(6)]
    plain = sqlite3.connect(str(db_path))
    expected = {i: plain.execute(_POINT, (i,)).fetchone() for i in range(200)}
    plain.close()
    errors = []

    def reader(c, k):
        try:
            for n in range(300):
                i = (n * 7 + k) % 200
                cur = c.cursor()
                cur.execute(_POINT, (i,))
                if cur.fetchone() != expected[i] or cur.fetchone() is not None:
                    errors.append((k, i))
                assert c.execute(_POINT, (i,)).fetchall() == [expected[i]]
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(c, k)) for k, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(contended) >= 6 * 600 and all(contended)


def test_rows_are_fetched_by_sqlite3_after_the_turn(conn, contended):
    cur = conn.execute(_POINT, (3,))
    assert contended == [True, True]
    assert not _turn.lock._is_owned()
    with pytest.raises(sqlite3.OperationalError, match="database table is locked"):
        conn.execute("drop table t")  # as in sqlite3: the read above is still part-way
    assert cur.fetchone() == (3, "s3")
    assert cur.fetchone() is None
    conn.rollback()
    conn.execute("drop table t")


def test_writes_offloaded_reads_functions_and_timed_statements_do_not_take_it(
        mp_connect, conn, contended):
    conn.execute("insert into t values (500, 'w')")
    conn.commit()
    big = "select a.x from t a, t b where b.x < 10 order by a.x"
    mark_heavy(conn, big)  # 2000 rows: the next run is offloaded
    conn.create_function("twice", 1, lambda v: 2 * v)
    udf = "select twice(x) from t where x = 3"
    assert conn.execute(udf).fetchone() == (6,)
    contended.clear()
    assert len(conn.execute(big).fetchall()) == 2010
    assert conn.execute(udf).fetchone() == (6,)
    timed = mp_connect(statement_timeout=5.0)
    assert timed.execute(_POINT, (4,)).fetchone() == (4, "s4")
    assert contended == []
    assert conn.execute(_POINT, (5,)).fetchone() == (5, "s5")
    assert contended == [True, True]  # Connection.execute, then Cursor.execute inside it


def test_a_long_read_leaves_the_turn_and_backs_off(conn, contended):
    assert conn.execute(_SLOW).fetchone() == _SLOW_ROW
    assert _long_reads(conn)[_SLOW] == [0, 0]  # held it long: measured again next time
    assert conn.execute(_SLOW).fetchone() == _SLOW_ROW
    assert _long_reads(conn)[_SLOW] == [_turn.BACKOFF, _turn.BACKOFF]
    contended.clear()
    for _ in range(_turn.BACKOFF):
        assert conn.execute(_SLOW).fetchone() == _SLOW_ROW
    assert contended == []
    assert _long_reads(conn)[_SLOW] == [0, _turn.BACKOFF]
    assert conn.execute(_SLOW).fetchone() == _SLOW_ROW  # tried in the turn again: still long
    assert contended and all(contended)
    assert _long_reads(conn)[_SLOW] == [2 * _turn.BACKOFF, 2 * _turn.BACKOFF]


def test_a_short_read_found_long_by_the_clock_alone_stays_in_the_turn(conn, contended):
    _long_reads(conn)[_POINT] = [0, 0]  # as after a wait for the GIL inside the turn
    assert conn.execute(_POINT, (9,)).fetchone() == (9, "s9")
    assert _POINT not in _long_reads(conn)
    assert contended and all(contended)


def test_a_read_waits_for_the_turn_only_so_long(conn, contended):
    with _held_by_another_thread():
        assert conn.execute(_POINT, (11,)).fetchone() == (11, "s11")
    assert contended[:2] == [False, False]  # it gave up waiting, twice, and read anyway


def test_a_callback_may_read_while_its_read_holds_the_turn(mp_connect, conn, contended):
    other = mp_connect()
    seen = []

    def trace(sql):
        if "from t" in sql:
            seen.append(other.execute("select count(*) from t").fetchone())

    conn.set_trace_callback(trace)
    assert conn.execute(_POINT, (12,)).fetchone() == (12, "s12")
    assert seen == [(200,)]
    assert contended and all(contended)  # the read inside it did not wait for its own turn


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_child_forked_while_another_thread_holds_the_turn_can_take_it(conn, contended):
    with _held_by_another_thread():
        pid = os.fork()
        if pid == 0:
            ok = _turn.lock.acquire(False)
            os._exit(0 if ok and _turn.contended == 0 else 3)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

"""The short-read turn: while threads contend, their short reads run one at a time.

sqlite3 releases the GIL around every call into SQLite. When many threads
make short reads, each release hands the GIL to another thread, which runs
its own Python until it too calls into SQLite, and the reader that released
it waits to get it back: the threads convoy, and 16 threads read fewer rows
per second than one. Once two readers of this process have been seen in
SQLite at the same time, a short read takes the turn (a process-wide lock)
for its own Python and its call into SQLite: ``Connection.execute`` from
making the cursor, ``Cursor.execute`` from routing the statement. The other
readers then wait on the turn with the GIL released, so a release finds no
reader waiting for it. Rows are fetched afterwards, outside the turn, by
sqlite3 itself: nothing a caller can see changes.

- **Off by default** (``CONTENDED = 0``). On a loaded 2-core machine it gave
  16 threads 1.11x plain sqlite3's point reads (turn off: about 0.8x); on an
  unloaded one it cost them 0.51x against 0.84x off, since the threads then
  convoy on the turn instead (docs/benchmarks.md). It stays, tested, until a
  switch that measures which of the two a process is in.
- Off, a read pays two tests. On, a thread alone pays a test and a store:
  the turn is taken only for ``CONTENDED`` reads after contention was last seen.
- A thread waits at most ``TURN_WAIT`` for the turn, then reads anyway.
- A read that held the turn for more than ``LONG_WALL`` is measured again,
  by thread CPU time; if that exceeds ``LONG_CPU``, it runs outside the turn
  for ``BACKOFF`` runs, doubling each time it proves long again.
- Only reads that run in this process take it: not writes (they queue at the
  writer gate), offloaded reads, reads that call the connection's Python
  functions, nor statements timed by ``statement_timeout``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from time import perf_counter, thread_time
from typing import TYPE_CHECKING, Any

from ._sql import Kind, _memo

if TYPE_CHECKING:
    from ._database import Database

#: Longest wait for the turn; after it the read runs beside the holder.
TURN_WAIT = 0.02
#: Reads that take the turn after contention was last seen; 0: never (the default).
CONTENDED = 0
#: Time holding the turn above which a read is measured again, by thread CPU time.
LONG_WALL = 0.0005
#: Thread CPU time in the turn above which a read runs outside it for a while.
LONG_CPU = 0.0005
#: Runs outside the turn of a read found long, doubled each time it proves long again.
BACKOFF, BACKOFF_MAX = 64, 8192
_LONG_LIMIT = 4096  # most statements remembered as long, per database

_execute = sqlite3.Cursor.execute
_READ = Kind.READ

lock = threading.RLock()  # reentrant: a callback of a read in the turn may read too
contended = 0  # reads left that take the turn
#: id() of the cursor that last began a read outside the turn: another one there after a
#: read means that another thread read while this one was in SQLite (it let go of the GIL).
last = 0


def _after_fork_in_child() -> None:
    global lock, contended, last
    lock = threading.RLock()  # a thread of the parent may have held it
    contended = last = 0


os.register_at_fork(after_in_child=_after_fork_in_child)


def take() -> threading.RLock | None:
    """The turn, taken (release it); None after waiting ``TURN_WAIT`` in vain. Call only
    while ``contended``."""
    global contended
    turn = lock
    if turn.acquire(False):
        if contended > 0:
            contended -= 1
        return turn
    contended = CONTENDED
    return turn if turn.acquire(True, TURN_WAIT) else None


def short(con: Any, db: Database, sql: str) -> bool:
    """Whether ``con.execute(sql)`` is, as far as is known before it runs, a short read run
    here: worth taking the turn for before its cursor is made."""
    if type(sql) is not str or _memo.get(sql) is not _READ or sql in db.heavy or (
            con._clock is not None):
        return False
    if con._udfs and con._calls_python(sql):
        return False
    entry = db.long_reads.get(sql)
    return entry is None or entry[0] <= 0


def read(cursor: Any, db: Database, sql: str, parameters: Any) -> None:
    """Run the read ``sql`` on ``cursor`` (a local mpsqlite cursor) in sqlite3's C code,
    while ``contended``: in the turn, unless it has proved long or waited in vain."""
    global contended, last
    entry = db.long_reads.get(sql)
    if entry is None or entry[0] <= 0:
        turn = take()
        if turn is not None:
            c0 = thread_time() if entry is not None else 0.0
            t0 = perf_counter()
            try:
                _execute(cursor, sql, parameters)
            finally:
                took = perf_counter() - t0
                turn.release()
            if entry is not None:
                _measured(db, sql, entry, thread_time() - c0)
            elif took > LONG_WALL:
                _suspect(db, sql)
            return
    else:
        entry[0] -= 1
    last = me = id(cursor)
    _execute(cursor, sql, parameters)
    if last != me:  # another thread read while this one was in SQLite
        contended = CONTENDED


def _suspect(db: Database, sql: str) -> None:
    """A read of ``sql`` held the turn long (maybe only waiting for the GIL): its next run
    in the turn is measured by thread CPU time."""
    if len(db.long_reads) >= _LONG_LIMIT:
        db.long_reads.clear()
    db.long_reads[sql] = [0, 0]


def _measured(db: Database, sql: str, entry: list[int], cpu: float) -> None:
    """Judge a read of ``sql`` by its thread CPU time in the turn: a long one runs outside
    the turn for a while, twice as long each time it proves long again."""
    if cpu > LONG_CPU:
        entry[0] = entry[1] = min(max(entry[1] * 2, BACKOFF), BACKOFF_MAX)
    else:
        db.long_reads.pop(sql, None)

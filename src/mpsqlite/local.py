"""Cheap reads in the calling thread, on a private read-only connection.

A round trip to a worker costs tens of microseconds; a point query costs a
few. So a read outside any transaction first runs here, on a read-only
connection of the calling thread (WAL keeps it consistent with the workers:
each statement sees everything committed before it started). A statement
that proves expensive here (a running average of its CPU time over
``CHEAP_SECONDS``, or twenty times that once, or more rows than one reply
carries) is remembered
and from then on always goes to the workers, where it runs outside the
caller's GIL. A first run may be slow for reasons of its own (schema load,
cold cache), hence the several runs.
"""

from __future__ import annotations

import pickle
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

from . import protocol as p

if TYPE_CHECKING:
    from .pool import Pool

CHEAP_SECONDS = 50e-6
_WEIGHT = 0.2  # of the newest run in the running average
_clock = time.thread_time


class LocalReads:
    """Per-thread read-only connections to a pool's database, and what is cheap."""

    def __init__(
        self, pool: Pool, database: str, uri: bool, detect_types: int, timeout: float
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        if uri:
            sep = "&" if "?" in database else "?"
            self._target = f"{database}{sep}mode=ro"
        else:
            self._target = "file:" + database.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        self._detect_types = detect_types
        self._tls = threading.local()
        self.heavy: set[str] = set()
        self._cost: dict[str, float] = {}
        self.disabled = False
        self.running: dict[int, tuple[Any, sqlite3.Connection]] = {}
        self.statements = 0

    def _connection(self) -> tuple[sqlite3.Connection, list[int]]:
        tls = self._tls
        con = getattr(tls, "con", None)
        if con is None:
            con = sqlite3.connect(
                self._target, uri=True, detect_types=self._detect_types, timeout=self._timeout,
                check_same_thread=False, isolation_level=None,
            )
            tls.con, tls.applied, tls.tf = con, [0], str
            tls.fresh = True
        setup = self._pool.setup
        applied = tls.applied
        while applied[0] < len(setup):
            self._apply(con, setup[applied[0]])
            applied[0] += 1
        return con, applied

    def _apply(self, con: sqlite3.Connection, entry: tuple) -> None:
        kind, key, payload = entry
        if kind == p.SETUP_CALL:
            name, args, kwargs = pickle.loads(payload)
            if name in ("load_extension", "enable_load_extension", "set_trace_callback"):
                return
            getattr(con, name)(*args, **kwargs)
        elif kind == p.SETUP_SQL:
            con.execute(payload).fetchall()

    def run(self, owner: Any, sql: str, params: Any, text_factory: Any) -> tuple | None:
        """The reply a worker would give, or None when the workers should run it."""
        try:
            con, _ = self._connection()
        except sqlite3.Error:
            self.disabled = True
            return None
        tls = self._tls
        if tls.tf is not text_factory:
            con.text_factory = tls.tf = text_factory
        ident = threading.get_ident()
        self.running[ident] = (owner, con)
        start = _clock()
        cur = con.cursor()
        try:
            if params is None:
                cur.execute(sql)
            else:
                cur.execute(sql, params)
            rows = cur.fetchmany(p.FIRST_ROWS) if cur.description is not None else []
        except sqlite3.OperationalError as exc:
            cur.close()
            if "readonly" in str(exc) or "read-only" in str(exc):
                self.heavy.add(sql)
                return None
            raise
        finally:
            del self.running[ident]
        if len(rows) == p.FIRST_ROWS:
            self.heavy.add(sql)
            cur.close()
            return None
        cost = _clock() - start
        if tls.fresh:  # the first statement also loads the schema: not a fair measure
            tls.fresh = False
        else:
            avg = self._cost.get(sql)
            avg = cost if avg is None else avg + _WEIGHT * (cost - avg)
            self._cost[sql] = avg
            if avg > CHEAP_SECONDS or cost > 20 * CHEAP_SECONDS:
                self.heavy.add(sql)
        self.statements += 1
        reply = (cur.description, cur.rowcount, cur.lastrowid, rows, False, False, 0)
        cur.close()
        return reply

    def interrupt(self, owner: Any) -> None:
        """Interrupt the local statements ``owner`` is running."""
        for who, con in list(self.running.values()):
            if who is owner:
                con.interrupt()

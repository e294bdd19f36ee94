"""The worker process: equivalent connections serving offloaded reads in a loop.

Started by the caller as ``python -I`` (no current directory, no user site
on ``sys.path``), reading requests from its end of a private socket pair. For
each caller connection it serves, it keeps an equivalent connection to the
same file (identity checked by device and inode) with that connection's
functions, collations, pragmas and attachments replayed; it only ever reads.

Its standard input is a lifeline: the caller writes to it only one-byte
interrupt requests, so end of file there means the caller is gone and the
worker exits at once, even in the middle of a query.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from . import _wire as w
from ._timer import Deadline

# Equivalent connections kept per worker; the least recently used is closed.
MAX_CONNECTIONS = 32

_T = TypeVar("_T")


class Refused(Exception):
    """This worker cannot stand in for the caller's connection."""


class _Equivalent:
    __slots__ = ("version", "con")

    def __init__(self, version: int, con: Any) -> None:
        self.version = version
        self.con = con


class _Worker:
    def __init__(self, driver: str) -> None:
        self.driver = importlib.import_module(driver)
        self.is_sqlite = driver == "sqlite3"
        self.cons: OrderedDict[int, _Equivalent] = OrderedDict()
        self.pending: Any = None  # the cursor of a result with rows still to send
        self.pending_con: Any = None  # its connection (PEP 249 cursors need not name it)
        self.chunk = w.FIRST_ROWS
        self.current: Any = None  # the connection running a statement (for interrupts)
        self.deadline = Deadline(self.interrupt)  # the caller's statement_timeout

    def handle(self, req: w.Message) -> w.Message:
        kind = w.op(req)
        if kind == w.OP_EXEC:
            return self._exec(*w.read_exec(req))
        if kind == w.OP_FETCH:
            return self._fetch(w.read_fetch(req))
        raise ValueError(f"unknown request {kind!r}")

    def _timed(self, con: Any, timeout: w.Timeout | None, run: Callable[[], _T]) -> _T:
        """``run()`` on ``con``, interrupted when the caller's seconds left run out."""
        self.current = con
        try:
            if timeout is None:
                return run()
            limit, left = timeout
            now = time.monotonic()
            self.deadline.arm(0, now + left, now)
            try:
                return run()
            except Exception as exc:
                if self.deadline.disarm(0) and w.interrupted(exc):
                    raise w.exceeded(exc, limit, f" on worker process {os.getpid()}") from None
                raise
            finally:
                self.deadline.disarm(0)
        finally:
            self.current = None

    def drop(self) -> None:
        cur, self.pending = self.pending, None
        if cur is not None:
            cur.close()

    def forget(self, keys: list[int]) -> None:
        for key in keys:
            self._forget(key)

    def _exec(
        self, con_key: int, version: int, settings: w.Settings | None, sql: str, params: Any,
        timeout: w.Timeout | None,
    ) -> w.Message:
        self.drop()
        eq = self.cons.get(con_key)
        if eq is None or eq.version != version:
            if settings is None:
                return w.need_settings()
            self._forget(con_key)
            try:
                eq = _Equivalent(version, self._open(settings))
            except Refused as why:
                return w.refused(str(why))
            self.cons[con_key] = eq
            while len(self.cons) > MAX_CONNECTIONS:
                self._forget(next(iter(self.cons)))
        self.cons.move_to_end(con_key)
        start = time.thread_time()
        cur = eq.con.cursor()

        def run() -> list[Any]:
            cur.execute(sql, params) if params is not None else cur.execute(sql)
            return cur.fetchmany(w.FIRST_ROWS) if cur.description is not None else []

        rows = self._timed(eq.con, timeout, run)
        more = len(rows) == w.FIRST_ROWS
        if more:
            self.pending, self.pending_con, self.chunk = cur, eq.con, w.FIRST_ROWS
        else:
            cur.close()
            if not self.is_sqlite:
                eq.con.rollback()  # end the read transaction such drivers open
        return w.ok(w.exec_result(cur.description, rows, more, time.thread_time() - start))

    def _fetch(self, timeout: w.Timeout | None) -> w.Message:
        cur = self.pending
        if cur is None:
            return w.ok(w.fetch_result([], False))
        self.chunk = min(self.chunk * 4, w.MAX_CHUNK_ROWS)
        try:
            rows = self._timed(self.pending_con, timeout, lambda: cur.fetchmany(self.chunk))
        except BaseException:
            self.drop()
            raise
        more = len(rows) == self.chunk
        if not more:
            self.drop()
        return w.ok(w.fetch_result(rows, more))

    def _open(self, settings: w.Settings) -> Any:
        connect, entries = w.read_settings(settings)
        if self.is_sqlite:
            target, uri, timeout, identity = connect
            con = self.driver.connect(
                target, uri=uri, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            try:
                main = con.execute("PRAGMA database_list").fetchone()[2]
                st = os.stat(main)
                if (st.st_dev, st.st_ino) != tuple(identity):
                    raise Refused(f"{target!r} is no longer the file the caller has open")
                # The schema is read now, so that the first statement's cost, by which
                # the caller judges it, is the statement's own.
                con.execute("SELECT 1 FROM sqlite_master LIMIT 0").fetchall()
            except (OSError, self.driver.Error) as exc:
                con.close()
                raise Refused(f"cannot open {target!r} as the caller has it: {exc}") from None
        else:
            args, kwargs = connect
            con = self.driver.connect(*args, **kwargs)
        try:
            for entry in entries:
                if entry[0] == "call":
                    name, args, kwargs = pickle.loads(entry[1])
                    getattr(con, name)(*args, **kwargs)
                else:
                    con.execute(entry[1], entry[2]) if entry[2] is not None else con.execute(
                        entry[1])
            if self.is_sqlite:
                con.execute("PRAGMA query_only = 1")  # after the replay: it only ever reads
        except Exception as exc:
            con.close()
            raise Refused(f"cannot replay the connection's settings: {exc!r}") from None
        return con

    def _forget(self, key: int) -> None:
        eq = self.cons.pop(key, None)
        if eq is not None:
            if self.pending is not None and self.pending_con is eq.con:
                self.drop()
            if self.is_sqlite:
                # The last connection to close checkpoints and removes the WAL:
                # a query_only one could not.
                eq.con.execute("PRAGMA query_only = 0")
            eq.con.close()

    def interrupt(self) -> None:
        con = self.current
        if con is not None and hasattr(con, "interrupt"):
            con.interrupt()

    def close(self) -> None:
        self.drop()
        for key in list(self.cons):
            self._forget(key)


def _watch_lifeline(worker: _Worker) -> None:
    """Exit when the caller closes our stdin; one byte there is an interrupt."""
    fd = sys.stdin.fileno()
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if not data:
            os._exit(0)
        try:
            worker.interrupt()
        except Exception:
            pass


def complete_package(name: str) -> Any:
    """The rest of the bare ``mpsqlite`` package the worker starts with, loaded on first
    use: by an application's function that calls mpsqlite, say."""
    import importlib.util

    pkg = sys.modules["mpsqlite"]
    del pkg.__getattr__
    spec = importlib.util.spec_from_file_location(
        "mpsqlite", os.path.join(pkg.__path__[0], "__init__.py"),
        submodule_search_locations=list(pkg.__path__))
    assert spec is not None and spec.loader is not None
    pkg.__spec__, pkg.__file__ = spec, spec.origin
    spec.loader.exec_module(pkg)
    return getattr(pkg, name)


def main(fd: int) -> None:
    """Serve requests on the socket ``fd`` until told to close or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pkg = sys.modules.get("mpsqlite")
    if pkg is not None and not hasattr(pkg, "__file__"):
        pkg.__getattr__ = complete_package  # type: ignore[method-assign]
    chan = w.Channel(socket.socket(fileno=fd))
    try:
        init = chan.recv()
        # After our own imports, so that nothing on the caller's path can shadow them.
        sys.path.extend(p for p in init["sys_path"] if p not in sys.path)
        worker = _Worker(init["driver"])
        threading.Thread(target=_watch_lifeline, args=(worker,), daemon=True).start()
        chan.send(w.ok(os.getpid()))
        while True:
            req = chan.recv()
            kind = w.op(req)
            if kind == w.OP_CLOSE:
                worker.close()
                return
            if kind == w.OP_DROP:
                worker.drop()
                continue
            if kind == w.OP_FORGET:
                worker.forget(w.read_forget(req))
                chan.send(w.ok(None))
                continue
            try:
                reply = worker.handle(req)
            except BaseException as exc:
                reply = w.error(exc)
            try:
                chan.send(reply)
            except w.ChannelClosed:
                raise
            except Exception as exc:  # a value in the result that cannot travel
                worker.drop()
                chan.send(w.error(exc))
    except w.ChannelClosed:
        pass
    finally:
        os._exit(0)

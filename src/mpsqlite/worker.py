"""The worker process: one real DB-API connection serving requests in a loop.

Started by the pool as ``python -c`` bootstrap calling :func:`main` with the
file descriptor of its end of a socket pair. Its standard input is a lifeline:
the parent never writes to it except for one-byte interrupt requests, so end
of file there means the parent is gone and the worker exits at once, even in
the middle of a query.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import socket
import sys
import threading
from typing import Any

from . import protocol as p


class _Pending:
    """A result with rows still to send, and its next chunk read ahead."""

    __slots__ = ("cur", "size", "rows", "error")

    def __init__(self, cur: Any, sent: int) -> None:
        self.cur = cur
        self.size = min(sent * 4, p.MAX_CHUNK_ROWS)
        self.rows: list | None = None
        self.error: BaseException | None = None

    def prefetch(self) -> None:
        if self.rows is None and self.error is None:
            try:
                self.rows = self.cur.fetchmany(self.size)
            except BaseException as exc:
                self.error = exc

    def take(self) -> tuple[list, bool]:
        self.prefetch()
        if self.error is not None:
            raise self.error
        rows, self.rows = self.rows, None
        assert rows is not None
        more = len(rows) == self.size
        self.size = min(self.size * 4, p.MAX_CHUNK_ROWS)
        return rows, more


class _Worker:
    """Executes requests against one connection; keeps cursors with unread rows."""

    def __init__(self, init: dict[str, Any]) -> None:
        self.driver = importlib.import_module(init["driver"])
        self.is_sqlite = init["driver"] == "sqlite3"
        # Other DB-API drivers open transactions implicitly; we track them.
        self.dirty = False
        if self.is_sqlite:
            for blob in init["converters"]:
                self.driver.register_converter(*pickle.loads(blob))
        kwargs = dict(init["connect_kwargs"])
        if self.is_sqlite:
            kwargs.update(isolation_level=None, check_same_thread=False)
        self.con = self.driver.connect(*init["connect_args"], **kwargs)
        self.cursors: dict[int, _Pending] = {}
        self.prefetch_cid: int | None = None
        # Pool-wide pragmas wait while a transaction is open here: some may
        # not change inside one.
        self.deferred: list[tuple] = []
        self.text_factories: dict[int, Any] = {0: str}
        self.text_factory_key = 0

    # -- request handling --------------------------------------------------

    def handle(self, req: tuple) -> tuple[bool, Any]:
        op, setup, close_ids = req[0], req[1], req[2]
        if close_ids:
            for cid in close_ids:
                pending = self.cursors.pop(cid, None)
                if pending is not None:
                    pending.cur.close()
        if setup:
            for entry in setup:
                if entry[0] == p.SETUP_SQL:
                    self.deferred.append(entry)
                    continue
                try:
                    self._apply_setup(entry)
                except Exception:
                    # SQLite refuses to redefine a function while a statement is
                    # active: wait for this worker's open results to end.
                    if not self.cursors:
                        raise
                    self.deferred.append(entry)
        # Pragmas wait for the end of a transaction (some may not change inside
        # one) and of open results (some are ignored while statements run).
        if self.deferred and not self.cursors and not self._in_transaction():
            entries, self.deferred = self.deferred, []
            for entry in entries:
                self._apply_setup(entry)
        if op == p.OP_EXEC:
            return True, self._exec(*req[3:])
        if op == p.OP_FETCH:
            return True, self._fetch(*req[3:])
        if op == p.OP_END:
            changes = self._total_changes()
            getattr(self.con, req[3])()
            self.dirty = False
            return True, (self._in_transaction(), self._total_changes() - changes)
        if op == p.OP_SCRIPT:
            return True, self._script(*req[3:])
        if op == p.OP_CALL:
            return True, getattr(self, "call_" + req[3])(*req[4])
        if op == p.OP_NOP:
            return True, None
        raise ValueError(f"unknown request {op!r}")

    def _apply_setup(self, entry: tuple) -> None:
        kind, key, payload = entry
        if kind == p.SETUP_CALL:
            name, args, kwargs = pickle.loads(payload)
            getattr(self.con, name)(*args, **kwargs)
        elif kind == p.SETUP_SQL:
            try:
                self.con.execute(*p.setup_sql(payload)).fetchall()
            except self.driver.Error:
                pass  # it failed, and said so, where the statement itself ran
        elif kind == p.SETUP_TEXT_FACTORY:
            self.text_factories[key] = pickle.loads(payload)
        elif kind == p.SETUP_CONVERTER:
            name, conv = pickle.loads(payload)
            self.driver.register_converter(name, conv)

    def _exec(
        self, cid: int, sql: str, params: Any, many: bool, begin: str | None, tf: int, first: int
    ) -> tuple:
        if tf != self.text_factory_key:
            self.con.text_factory = self.text_factories[tf]
            self.text_factory_key = tf
        old = self.cursors.pop(cid, None)
        if old is not None:
            old.cur.close()
        changes = self._total_changes()
        cur = self.con.cursor()
        if begin:
            cur.execute(begin)
        if self.is_sqlite and sql.lstrip()[:6].upper() == "PRAGMA":
            # Schema pragmas answer from a cached schema that another worker's
            # DDL may have outdated; reading sqlite_master reloads it.
            cur.execute("SELECT 1 FROM sqlite_master LIMIT 0").fetchall()
        if begin is not None and not self.is_sqlite:
            self.dirty = True
        try:
            if many:
                cur.executemany(sql, params)
            elif params is None:
                cur.execute(sql)
            else:
                cur.execute(sql, params)
            rows: list = []
            more = False
            if cur.description is not None:
                rows = cur.fetchmany(first)
                more = len(rows) == first
                if more:
                    self.cursors[cid] = _Pending(cur, first)
                    self.prefetch_cid = cid
            if not (self.is_sqlite or self.dirty or more):
                self.con.rollback()  # end the read transaction such drivers open
        except BaseException:
            cur.close()
            raise
        return (
            cur.description,
            cur.rowcount,
            cur.lastrowid,
            rows,
            more,
            self._in_transaction(),
            self._total_changes() - changes,
        )

    def _fetch(self, cid: int, n: int) -> tuple:
        pending = self.cursors.get(cid)
        if pending is None:
            return [], False, -1
        try:
            rows, more = pending.take()
        except BaseException:
            del self.cursors[cid]
            raise
        if more:
            self.prefetch_cid = cid
        else:
            del self.cursors[cid]
        return rows, more, pending.cur.rowcount

    def prefetch(self) -> None:
        """Read the next chunk of the result just served while the caller unpacks this one."""
        cid, self.prefetch_cid = self.prefetch_cid, None
        pending = self.cursors.get(cid) if cid is not None else None
        if pending is not None:
            pending.prefetch()

    def _script(self, script: str, commit_first: bool) -> tuple:
        changes = self._total_changes()
        if commit_first and self._in_transaction():
            self.con.commit()
        self.con.executescript(script)
        return self._in_transaction(), self._total_changes() - changes

    def _in_transaction(self) -> bool:
        if not self.is_sqlite:
            return self.dirty
        return self.con.in_transaction

    def _total_changes(self) -> int:
        return getattr(self.con, "total_changes", 0)

    # -- connection methods callable through OP_CALL -------------------------

    def call_iterdump(self) -> list[str]:
        return list(self.con.iterdump())

    def call_backup_to_file(self, path: str, name: str) -> None:
        target = self.driver.connect(path)
        try:
            self.con.backup(target, name=name)
        finally:
            target.close()

    def call_restore_from_file(self, path: str) -> None:
        source = self.driver.connect(path)
        try:
            source.backup(self.con)
        finally:
            source.close()

    def call_getlimit(self, category: int) -> int:
        return self.con.getlimit(category)

    def call_serialize(self, name: str) -> bytes:
        return self.con.serialize(name=name)

    def call_pid(self) -> int:
        return os.getpid()

    def interrupt(self) -> None:
        self.con.interrupt()

    def close(self) -> None:
        for pending in self.cursors.values():
            pending.cur.close()
        self.con.close()


def _watch_lifeline(worker: list[_Worker | None]) -> None:
    """Exit when the parent closes our stdin; one byte there is an interrupt."""
    fd = sys.stdin.fileno()
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if not data:
            os._exit(0)
        if worker[0] is not None:
            try:
                worker[0].interrupt()
            except Exception:
                pass


def main(fd: int) -> None:
    """Serve requests on the socket ``fd`` until told to close or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    holder: list[_Worker | None] = [None]
    threading.Thread(target=_watch_lifeline, args=(holder,), daemon=True).start()
    chan = p.Channel(socket.socket(fileno=fd))
    try:
        init = chan.recv()
        sys.path[:] = init["sys_path"]
        try:
            worker = _Worker(init)
        except BaseException as exc:
            chan.send((False, p.encode_error(exc), False))
            return
        holder[0] = worker
        chan.send((True, os.getpid(), False))
        while True:
            req = chan.recv()
            if req[0] == p.OP_CLOSE:
                worker.close()
                return
            try:
                ok, payload = worker.handle(req)
            except BaseException as exc:
                ok, payload = False, p.encode_error(exc)
            in_txn = worker._in_transaction()
            try:
                chan.send((ok, payload, in_txn))
            except p.ChannelClosed:
                raise
            except Exception as exc:  # an unpicklable value in the result
                chan.send((False, p.encode_error(exc), in_txn))
            worker.prefetch()
    except p.ChannelClosed:
        pass
    finally:
        os._exit(0)

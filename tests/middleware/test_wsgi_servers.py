"""Real servers on 127.0.0.1: CherryPy's app on cheroot and waitress, concurrent requests."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import cherrypy
import pytest
from _wsgi_support import PLAIN, UNRAISABLE_FAILS, Item, names
from mpsqlite_wsgi import SESSION_KEY, RetryPolicy, SessionMiddleware, current_session
from sqlalchemy import select

pytestmark = [
    UNRAISABLE_FAILS,
    pytest.mark.timeout(120),
]

THREADS = 8
REQUESTS = 64


class Root:
    """A CherryPy application using the request session."""

    def __init__(self) -> None:
        self.active: set[int] = set()
        self.lock = threading.Lock()
        self.problems: list[str] = []

    @cherrypy.expose
    def add(self, name: str) -> str:
        session = current_session()
        if cherrypy.request.wsgi_environ[SESSION_KEY] is not session:
            self.problems.append(f"{name}: environ and accessor disagree")
        with self.lock:
            if id(session) in self.active:
                self.problems.append(f"{name}: session shared by concurrent requests")
            self.active.add(id(session))
        try:
            session.info["name"] = name
            session.add(Item(name=name))
            session.flush()
            time.sleep(0.002)  # let other requests interleave
            if current_session().info.get("name") != name:
                self.problems.append(f"{name}: saw another request's session")
            seen = session.scalars(select(Item.name).where(Item.name == name)).all()
            return json.dumps({"name": name, "seen": seen})
        finally:
            with self.lock:
                self.active.discard(id(session))

    @cherrypy.expose
    def boom(self, name: str) -> str:
        current_session().add(Item(name=name))
        current_session().flush()
        raise RuntimeError("CherryPy turns this into a 500 before the middleware sees it")


def cherrypy_app(root: Root):
    app = cherrypy.Application(root, script_name="", config={"/": {}})
    app.log.screen = False
    app.log.error_log.propagate = False
    app.log.access_log.propagate = False
    return app


def streaming_app(events: dict):
    """Plain WSGI app streaming until the server closes it (client disconnect)."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ping":
            start_response("200 OK", PLAIN)
            return [str(current_session().scalars(select(Item.name)).all()).encode()]
        start_response("200 OK", PLAIN)
        current_session().add(Item(name="before-stream"))

        def body():
            try:
                for i in range(20000):
                    yield b"x" * 65536
                    if i == 0:
                        current_session().add(Item(name="during-stream"))
                        current_session().flush()
                events["exhausted"] = True
            finally:
                events["closed"].set()

        return body()

    return app


@contextmanager
def serve(kind: str, app) -> Iterator[int]:
    """Run *app* on a real server bound to 127.0.0.1 on a free port; yields the port."""
    if kind == "cheroot":
        from cheroot import wsgi

        server = wsgi.Server(("127.0.0.1", 0), app, numthreads=THREADS)
        server.prepare()
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            yield server.bind_addr[1]
        finally:
            server.stop()
            thread.join(30)
    else:
        from waitress.server import create_server

        server = create_server(app, host="127.0.0.1", port=0, threads=THREADS)
        stop = threading.Event()

        def run() -> None:
            # Poll in short rounds so the loop thread itself can close the server at the end.
            while not stop.is_set():
                server.asyncore.loop(timeout=0.05, map=server._map, count=1)
            server.close()
            server.task_dispatcher.shutdown()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield server.effective_port
        finally:
            stop.set()
            thread.join(30)


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


@pytest.mark.parametrize("server_kind", ["cheroot", "waitress"])
def test_concurrent_cherrypy_requests(engine, db_kind, server_kind):
    root = Root()
    # Stock sqlite can fail concurrent writers with "database is locked" (hence retry);
    # mpsqlite promises that its writers queue instead, so it runs without the safety net.
    retry = None if db_kind == "mpsqlite" else RetryPolicy(max_attempts=5)
    app = SessionMiddleware(cherrypy_app(root), engine, retry=retry)
    wanted = [f"item{i:03d}" for i in range(REQUESTS)]
    with serve(server_kind, app) as port:
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda n: get(port, f"/add?name={n}"), wanted))
            failed = list(pool.map(lambda n: get(port, f"/boom?name={n}"), ["b1", "b2"]))
    assert root.problems == []
    assert [status for status, _ in results] == [200] * REQUESTS
    assert [json.loads(body) for _, body in results] == [{"name": n, "seen": [n]} for n in wanted]
    assert [status for status, _ in failed] == [500, 500]
    assert names(engine) == wanted  # all committed, the 500s rolled back
    assert engine.pool.checkedout() == 0


@pytest.mark.parametrize("server_kind", ["cheroot", "waitress"])
def test_client_disconnect_forwards_close(engine, server_kind):
    events = {"closed": threading.Event()}
    app = SessionMiddleware(streaming_app(events), engine, buffer_size=0)
    with serve(server_kind, app) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = sock.recv(65536)
        sock.close()
        assert events["closed"].wait(60), "server never closed the app iterable"
        assert b"200 OK" in received
        # a request on the same server afterwards gets a clean session
        assert get(port, "/ping") == (200, b"['before-stream']")
    assert "exhausted" not in events
    assert names(engine) == ["before-stream"]  # committed before the headers; the rest undone
    deadline = time.monotonic() + 30
    while engine.pool.checkedout() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.pool.checkedout() == 0

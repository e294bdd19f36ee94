"""Commit-before-response and streaming rules (PEP 3333: close() always reaches the app)."""

from __future__ import annotations

import io
from wsgiref.util import FileWrapper, setup_testing_defaults
from wsgiref.validate import validator

import pytest
from _wsgi_support import PLAIN, UNRAISABLE_FAILS, ClosingIterable, Item, names
from mpsqlite_wsgi import SessionMiddleware, current_session, in_request, mark_for_rollback
from sqlalchemy import select

pytestmark = UNRAISABLE_FAILS


class Server:
    """A minimal in-process 'server': records start_response and what was committed then."""

    def __init__(self, app, engine, **environ):
        self.app = app
        self.engine = engine
        self.environ = environ
        self.status = None
        self.committed_at_start = None
        self.written: list[bytes] = []

    def start_response(self, status, headers, exc_info=None):
        self.status = status
        self.committed_at_start = names(self.engine)
        return self.written.append

    def open(self):
        environ = {"QUERY_STRING": "", **self.environ}
        setup_testing_defaults(environ)
        return self.app(environ, self.start_response)

    def get(self) -> bytes:
        result = self.open()
        try:
            return b"".join(self.written) + b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()


def gen_app(before: list[str], during: list[str], chunks: int = 3, size: int = 10):
    """Generator app: adds *before* items before its first chunk, *during* after its first."""

    def app(environ, start_response):
        session = current_session()
        for name in before:
            session.add(Item(name=name))
        start_response("200 OK", PLAIN)
        for i in range(chunks):
            yield bytes([65 + i]) * size
            if i == 0:
                for name in during:
                    current_session().add(Item(name=name))
                current_session().flush()

    return app


def test_commit_happens_before_start_response(engine):
    server = Server(validator(SessionMiddleware(validator(gen_app(["a"], ["b"])), engine)), engine)
    assert server.get() == b"A" * 10 + b"B" * 10 + b"C" * 10
    # Small body: produced completely inside the transaction, so both were committed first.
    assert server.committed_at_start == ["a", "b"]
    assert names(engine) == ["a", "b"]


def test_lazy_start_response_in_generator(engine):
    def app(environ, start_response):
        current_session().add(Item(name="lazy"))
        current_session().flush()
        start_response("201 Created", PLAIN)
        yield b""
        yield b"x"

    server = Server(validator(SessionMiddleware(validator(app), engine)), engine)
    assert server.get() == b"x"
    assert server.status == "201 Created"
    assert server.committed_at_start == ["lazy"]


def test_write_callable_output_is_held_until_commit(engine):
    def app(environ, start_response):
        write = start_response("200 OK", PLAIN)
        write(b"written ")
        current_session().add(Item(name="w"))
        current_session().flush()
        write(b"then ")
        return [b"returned"]

    server = Server(validator(SessionMiddleware(validator(app), engine)), engine)
    assert server.get() == b"written then returned"
    assert server.committed_at_start == ["w"]


def test_streaming_after_commit_is_committed_at_close(engine):
    mw = SessionMiddleware(validator(gen_app(["a"], ["b"])), engine, buffer_size=0)
    server = Server(validator(mw), engine)
    assert server.get() == b"A" * 10 + b"B" * 10 + b"C" * 10
    assert server.committed_at_start == ["a"]  # only the first chunk was produced before commit
    assert names(engine) == ["a", "b"]
    assert engine.pool.checkedout() == 0


def test_early_close_rolls_back_streaming_work_and_forwards_close(engine):
    closed = []

    def app(environ, start_response):
        start_response("200 OK", PLAIN)
        current_session().add(Item(name="before"))
        try:
            for i in range(1000):
                yield b"x" * 100
                current_session().add(Item(name=f"during{i}"))
                current_session().flush()
        finally:
            closed.append(in_request())

    server = Server(validator(SessionMiddleware(validator(app), engine, buffer_size=0)), engine)
    result = server.open()
    it = iter(result)
    next(it)
    next(it)
    next(it)  # client "disconnects" here: server closes without exhausting
    result.close()
    assert closed == [True]  # the app's cleanup ran with its session still reachable
    assert names(engine) == ["before"]
    assert engine.pool.checkedout() == 0


def test_error_while_streaming_rolls_back_streaming_work(engine):
    def app(environ, start_response):
        start_response("200 OK", PLAIN)
        current_session().add(Item(name="before"))
        yield b"first"
        current_session().add(Item(name="during"))
        current_session().flush()
        raise OSError("disk gone")

    server = Server(validator(SessionMiddleware(validator(app), engine, buffer_size=0)), engine)
    result = server.open()
    it = iter(result)
    assert next(it) == b"first"
    with pytest.raises(OSError):
        next(it)
    result.close()
    assert names(engine) == ["before"]
    assert engine.pool.checkedout() == 0


def test_rollback_requested_while_streaming(engine):
    def app(environ, start_response):
        start_response("200 OK", PLAIN)
        current_session().add(Item(name="before"))
        yield b"first"
        current_session().add(Item(name="during"))
        mark_for_rollback()
        yield b"second"

    server = Server(SessionMiddleware(app, engine, buffer_size=0), engine)
    assert server.get() == b"firstsecond"
    assert names(engine) == ["before"]


def test_vetoed_streaming_response_rolls_back_everything(engine):
    def app(environ, start_response):
        start_response("404 Not Found", PLAIN)
        current_session().add(Item(name="before"))
        yield b"first"
        current_session().add(Item(name="during"))
        yield b"second"

    server = Server(SessionMiddleware(app, engine, buffer_size=0), engine)
    assert server.get() == b"firstsecond"
    assert names(engine) == []


def test_buffer_size_decides_commit_point(engine):
    server = Server(
        SessionMiddleware(gen_app(["a"], ["b"], size=10), engine, buffer_size=20), engine
    )
    server.get()
    assert server.committed_at_start == ["a", "b"]

    server = Server(
        SessionMiddleware(gen_app(["c"], ["d"], size=30), engine, buffer_size=20), engine
    )
    server.get()
    assert server.committed_at_start == ["a", "b", "c"]
    assert names(engine) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("mode", ["buffered", "streamed", "error", "veto", "commit_fails"])
def test_close_is_forwarded_exactly_once(sqlite_engine, mode):
    iterable = ClosingIterable([b"a" * 10, b"b" * 10])

    def app(environ, start_response):
        current_session().add(Item(name="x"))
        if mode == "commit_fails":
            current_session().add(Item(name="x"))  # unique violation at flush-on-commit
        start_response("404 Not Found" if mode == "veto" else "200 OK", PLAIN)
        if mode == "error":
            return BrokenIterable(iterable)
        return iterable

    mw = SessionMiddleware(app, sqlite_engine, buffer_size=0 if mode == "streamed" else 1000)
    server = Server(mw, sqlite_engine)
    if mode == "error":
        with pytest.raises(ZeroDivisionError):
            server.get()
    else:
        body = server.get()
        expected = b"a" * 10 + b"b" * 10
        assert body.startswith(b"Internal") if mode == "commit_fails" else body == expected
    assert iterable.closed == 1
    assert sqlite_engine.pool.checkedout() == 0


class BrokenIterable:
    def __init__(self, inner):
        self.inner = inner

    def __iter__(self):
        return self

    def __next__(self):
        raise ZeroDivisionError

    def close(self):
        self.inner.close()


def test_file_wrapper_is_passed_through(engine):
    payload = io.BytesIO(b"file body")
    returned = []

    def app(environ, start_response):
        current_session().add(Item(name="f"))
        start_response("200 OK", PLAIN)
        wrapper = environ["wsgi.file_wrapper"](payload)
        returned.append(wrapper)
        return wrapper

    server = Server(SessionMiddleware(app, engine), engine, **{"wsgi.file_wrapper": FileWrapper})
    result = server.open()
    assert result is returned[0]
    assert server.committed_at_start == ["f"]
    assert b"".join(result) == b"file body"
    result.close()
    assert payload.closed
    assert engine.pool.checkedout() == 0


def test_session_usable_in_close_of_exhausted_body(engine):
    """Work done by the app's close() (e.g. CherryPy's end-of-request hooks) is committed."""

    class Body(ClosingIterable):
        def close(self):
            super().close()
            current_session().add(Item(name="from-close"))

    def app(environ, start_response):
        start_response("200 OK", PLAIN)
        return Body([b"x"])

    server = Server(SessionMiddleware(app, engine), engine)
    server.get()
    assert server.committed_at_start == ["from-close"]  # part of the request's transaction


def test_query_during_streaming_sees_committed_data(engine):
    def app(environ, start_response):
        start_response("200 OK", PLAIN)
        current_session().add(Item(name="one"))
        yield b"x"
        yield str(current_session().scalars(select(Item.name)).all()).encode()

    server = Server(SessionMiddleware(app, engine, buffer_size=0), engine)
    assert server.get() == b"x['one']"

"""Bounded retry on transient database errors, with real SQLite lock contention."""

from __future__ import annotations

import io
import sqlite3
from wsgiref.validate import validator

import pytest
import webtest
from _wsgi_support import PLAIN, UNRAISABLE_FAILS, Base, Item, names
from mpsqlite_wsgi import RetryPolicy, SessionMiddleware, current_session, is_transient
from mpsqlite_wsgi.retry import capture_body
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError

pytestmark = UNRAISABLE_FAILS

FAST = RetryPolicy(max_attempts=3, backoff=0.001, max_backoff=0.002)


class Blocker:
    """A second real connection holding a lock on the database file."""

    def __init__(self, path, mode: str):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if mode == "write":
            self.conn.execute("BEGIN IMMEDIATE")  # RESERVED lock: other writers are locked out
        else:
            self.conn.execute("BEGIN")
            self.conn.execute("SELECT * FROM wsgi_items").fetchall()  # SHARED lock: COMMIT waits
        self.releases = 0

    def release(self, *args) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
            self.releases += 1

    def close(self) -> None:
        self.release()
        self.conn.close()


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    Base.metadata.create_all(engine)
    yield path, engine
    engine.dispose()


def inserting_app(calls: list, swallow: bool = False):
    """Inserts the request body as an Item name; optionally turns DB errors into a 500."""

    def app(environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        calls.append(body)
        try:
            current_session().add(Item(name=body.decode()))
            current_session().flush()
        except OperationalError:
            if not swallow:
                raise
            start_response("500 Internal Server Error", PLAIN)
            return [b"framework error page"]
        start_response("200 OK", PLAIN)
        return [b"stored " + body]

    return app


def test_retry_replays_body_after_locked_write(db):
    path, engine = db
    blocker = Blocker(path, "write")
    event.listen(engine, "handle_error", blocker.release)  # the lock goes away after 1st failure
    calls: list[bytes] = []
    app = webtest.TestApp(
        validator(SessionMiddleware(validator(inserting_app(calls)), engine, retry=FAST))
    )
    res = app.post("/", b"payload", content_type="text/plain")
    assert res.body == b"stored payload"
    assert calls == [b"payload", b"payload"]
    assert blocker.releases == 1
    assert names(engine) == ["payload"]
    blocker.close()


def test_retry_is_bounded(db):
    path, engine = db
    blocker = Blocker(path, "write")
    calls: list[bytes] = []
    app = webtest.TestApp(SessionMiddleware(inserting_app(calls), engine, retry=FAST))
    with pytest.raises(OperationalError, match="locked"):
        app.post("/", b"p", content_type="text/plain")
    assert len(calls) == 3
    blocker.close()
    assert names(engine) == []
    assert engine.pool.checkedout() == 0


def test_no_retry_by_default(db):
    path, engine = db
    blocker = Blocker(path, "write")
    event.listen(engine, "handle_error", blocker.release)
    calls: list[bytes] = []
    app = webtest.TestApp(SessionMiddleware(inserting_app(calls), engine))
    with pytest.raises(OperationalError):
        app.post("/", b"p", content_type="text/plain")
    assert len(calls) == 1
    blocker.close()


def test_large_body_is_not_retried_but_reaches_the_app(db):
    path, engine = db
    blocker = Blocker(path, "write")
    event.listen(engine, "handle_error", blocker.release)
    calls: list[bytes] = []
    policy = RetryPolicy(max_attempts=3, backoff=0.001, max_body=4)
    app = webtest.TestApp(SessionMiddleware(inserting_app(calls), engine, retry=policy))
    with pytest.raises(OperationalError):
        app.post("/", b"too-long", content_type="text/plain")
    assert calls == [b"too-long"]
    blocker.close()


def test_error_turned_into_500_by_the_framework_is_retried(db):
    path, engine = db
    blocker = Blocker(path, "write")
    event.listen(engine, "handle_error", blocker.release)
    calls: list[bytes] = []
    app = webtest.TestApp(SessionMiddleware(inserting_app(calls, swallow=True), engine, retry=FAST))
    assert app.post("/", b"x", content_type="text/plain").body == b"stored x"
    assert len(calls) == 2
    blocker.close()


def test_locked_commit_is_retried(db):
    path, engine = db
    blocker = Blocker(path, "read")
    event.listen(engine, "handle_error", blocker.release)
    calls: list[bytes] = []
    app = webtest.TestApp(
        validator(SessionMiddleware(validator(inserting_app(calls)), engine, retry=FAST))
    )
    assert app.post("/", b"c", content_type="text/plain").body == b"stored c"
    assert calls == [b"c", b"c"]
    assert names(engine) == ["c"]
    blocker.close()


def test_locked_commit_without_retry_is_a_500(db):
    path, engine = db
    blocker = Blocker(path, "read")
    calls: list[bytes] = []
    app = webtest.TestApp(SessionMiddleware(inserting_app(calls), engine))
    app.post("/", b"c", content_type="text/plain", status=500)
    blocker.close()
    assert names(engine) == []


def test_non_transient_error_is_not_retried(db):
    _, engine = db
    calls: list[bytes] = []
    app = webtest.TestApp(SessionMiddleware(inserting_app(calls), engine, retry=FAST))
    app.post("/", b"dup", content_type="text/plain")
    with pytest.raises(IntegrityError):
        app.post("/", b"dup", content_type="text/plain")
    assert len(calls) == 2


def _locked_error(path) -> sqlite3.OperationalError:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("INSERT INTO wsgi_items (name) VALUES ('z')")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        other.close()
        holder.close()
    raise AssertionError("expected a locked error")


def test_is_transient_classification(db):
    path, engine = db
    locked = _locked_error(path)
    assert is_transient(locked)
    with engine.connect() as conn:
        with pytest.raises(IntegrityError) as integrity:
            conn.execute(text("INSERT INTO wsgi_children (item_id) VALUES (NULL)"))
    assert not is_transient(integrity.value)
    assert not is_transient(ValueError("database is locked"))  # not a database error
    try:
        raise RuntimeError("framework wrapper") from locked
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    wrapped_sa = OperationalError("INSERT", {}, locked)
    assert is_transient(wrapped_sa)

    class PgError(Exception):  # what psycopg2 / psycopg expose; no server here
        def __init__(self, code):
            self.pgcode = self.sqlstate = code

    assert is_transient(PgError("40001")) and is_transient(PgError("40P01"))
    assert not is_transient(PgError("23505"))
    assert is_transient(Exception(1213, "Deadlock found"))


def test_retry_policy_values():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(backoff=-1)
    policy = RetryPolicy(backoff=0.1, max_backoff=0.3)
    for n in range(1, 8):
        assert 0.0 <= policy.delay(n) <= 0.3
    assert 0.05 <= policy.delay(1) <= 0.1


def test_capture_body_variants():
    env = {"CONTENT_LENGTH": "5", "wsgi.input": io.BytesIO(b"hello, more")}
    assert capture_body(env, 10) == b"hello"
    assert capture_body({"CONTENT_LENGTH": "", "wsgi.input": io.BytesIO(b"x")}, 10) == b""
    env = {"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(b"chunked body")}
    assert capture_body(env, 100) == b"chunked body"
    env = {"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(b"line1\nline2\nrest")}
    assert capture_body(env, 3) is None
    assert env["wsgi.input"].readline() == b"line1\n"
    assert env["wsgi.input"].read(3) == b"lin"
    assert env["wsgi.input"].read() == b"e2\nrest"
    env = {"CONTENT_LENGTH": "20", "wsgi.input": io.BytesIO(b"x" * 20)}
    assert capture_body(env, 10) is None
    assert env["wsgi.input"].read(20) == b"x" * 20

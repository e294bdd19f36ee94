"""Session lifecycle rules, checked through WebTest with wsgiref.validate on both sides."""

from __future__ import annotations

import threading
from wsgiref.validate import validator

import pytest
import webtest
from _wsgi_support import PLAIN, UNRAISABLE_FAILS, CheckoutCounter, Child, Item, count, names
from mpsqlite_wsgi import (
    ROLLBACK_KEY,
    SESSION_KEY,
    NoSessionError,
    SessionMiddleware,
    current_session,
    in_request,
    mark_for_rollback,
)
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

pytestmark = UNRAISABLE_FAILS


def wrap(app, bind, **kw) -> webtest.TestApp:
    """The middleware with wsgiref.validate checking both the server and the app side."""
    return webtest.TestApp(validator(SessionMiddleware(validator(app), bind, **kw)))


def adding_app(status="200 OK", fail=False, rollback=False, flag=False):
    def app(environ, start_response):
        session = current_session()
        assert environ[SESSION_KEY] is session
        session.add(Item(name=environ["PATH_INFO"].strip("/")))
        session.flush()
        if fail:
            raise ValueError("boom")
        if rollback:
            mark_for_rollback()
        if flag:
            environ[ROLLBACK_KEY] = True
        start_response(status, PLAIN)
        return [b"done"]

    return app


def test_commit_on_success(engine):
    app = wrap(adding_app(), engine)
    assert app.get("/a").body == b"done"
    app.get("/b")
    assert names(engine) == ["a", "b"]


def test_rollback_on_exception_and_reraise(engine):
    app = wrap(adding_app(fail=True), engine)
    with pytest.raises(ValueError, match="boom"):
        app.get("/a")
    assert names(engine) == []


@pytest.mark.parametrize("status", ["404 Not Found", "400 Bad Request", "500 Server Error"])
def test_default_veto_rolls_back_error_statuses(engine, status):
    app = wrap(adding_app(status=status), engine)
    app.get("/a", status="*")
    assert names(engine) == []


def test_redirect_is_committed(engine):
    app = wrap(adding_app(status="302 Found"), engine)
    app.get("/a", status=302)
    assert names(engine) == ["a"]


def test_custom_veto(engine):
    seen = []

    def veto(environ, status, headers):
        seen.append(status)
        return status.startswith("202")

    wrap(adding_app(status="202 Accepted"), engine, commit_veto=veto).get("/a")
    wrap(adding_app(status="404 Not Found"), engine, commit_veto=veto).get("/b", status=404)
    assert seen == ["202 Accepted", "404 Not Found"]
    assert names(engine) == ["b"]


def test_mark_for_rollback(engine):
    wrap(adding_app(rollback=True), engine).get("/a")
    assert names(engine) == []


def test_environ_rollback_flag(engine):
    wrap(adding_app(flag=True), engine).get("/a")
    assert names(engine) == []


def test_text_writes_are_committed(engine):
    def app(environ, start_response):
        current_session().execute(text("INSERT INTO wsgi_items (name) VALUES ('raw')"))
        start_response("200 OK", PLAIN)
        return [b"ok"]

    wrap(app, engine).get("/")
    assert names(engine) == ["raw"]


def test_untouched_session_does_no_database_work(engine):
    counter = CheckoutCounter(engine)

    def idle(environ, start_response):
        start_response("200 OK", PLAIN)
        return [b"idle"]

    wrap(idle, engine).get("/")
    assert counter.count == 0
    wrap(adding_app(), engine).get("/x")
    assert counter.count == 1


def test_no_connection_left_checked_out(engine):
    app = wrap(adding_app(), engine)
    app.get("/a")
    with pytest.raises(IntegrityError):
        app.get("/a")  # unique violation at flush
    assert engine.pool.checkedout() == 0


def test_fresh_session_per_request_and_closed_afterwards(engine):
    sessions: list[Session] = []
    items: list[Item] = []

    def app(environ, start_response):
        item = Item(name=environ["PATH_INFO"])
        sessions.append(current_session())
        items.append(item)
        current_session().add(item)
        current_session().flush()
        start_response("200 OK", PLAIN)
        return [b""]

    ta = wrap(app, engine)
    ta.get("/1")
    ta.get("/2")
    assert sessions[0] is not sessions[1]
    assert not any(s.in_transaction() for s in sessions)
    assert [i in s for i, s in zip(items, sessions)] == [False, False]  # closed, not just committed
    assert engine.pool.checkedout() == 0


def test_accessors_outside_request_raise():
    assert not in_request()
    with pytest.raises(NoSessionError):
        current_session()
    with pytest.raises(NoSessionError):
        mark_for_rollback()


def test_no_session_leaks_after_request_or_into_other_threads(engine):
    seen = {}

    def app(environ, start_response):
        def probe():
            seen["thread"] = in_request()

        t = threading.Thread(target=probe)
        t.start()
        t.join()
        seen["inside"] = in_request()
        start_response("200 OK", PLAIN)
        return [b""]

    wrap(app, engine).get("/")
    assert seen == {"thread": False, "inside": True}
    assert not in_request()


def test_sessionmaker_as_bind(engine):
    factory = sessionmaker(bind=engine, info={"made_by": "factory"})

    def app(environ, start_response):
        start_response("200 OK", PLAIN)
        return [current_session().info["made_by"].encode()]

    assert wrap(app, factory).get("/").body == b"factory"


def test_bad_bind_rejected():
    with pytest.raises(TypeError):
        SessionMiddleware(lambda e, s: [], "sqlite://")
    with pytest.raises(ValueError):
        SessionMiddleware(lambda e, s: [], lambda: None, buffer_size=-1)


def _enable_foreign_keys(engine):
    @event.listens_for(engine, "connect")
    def _fk(dbapi_connection, record):
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    engine.dispose()


def dangling_child_app(environ, start_response):
    current_session().add(Item(name="parent"))
    current_session().add(Child(item_id=999))  # checked only at COMMIT (deferred FK)
    current_session().flush()
    start_response("200 OK", PLAIN)
    return [b"this body must never be sent"]


def test_failed_commit_becomes_500(sqlite_engine, caplog):
    _enable_foreign_keys(sqlite_engine)
    res = wrap(dangling_child_app, sqlite_engine).get("/", status=500)
    assert b"must never" not in res.body
    assert res.content_type == "text/plain"
    assert names(sqlite_engine) == []
    assert "commit failed" in caplog.text
    assert sqlite_engine.pool.checkedout() == 0


def test_failed_commit_can_propagate(sqlite_engine):
    _enable_foreign_keys(sqlite_engine)
    app = webtest.TestApp(
        SessionMiddleware(dangling_child_app, sqlite_engine, raise_commit_errors=True)
    )
    with pytest.raises(IntegrityError):
        app.get("/")
    assert count(sqlite_engine) == 0


def test_app_that_never_calls_start_response(engine):
    def app(environ, start_response):
        current_session().add(Item(name="x"))
        return []

    with pytest.raises(RuntimeError, match="start_response"):
        webtest.TestApp(SessionMiddleware(app, engine), lint=False).get("/")
    assert names(engine) == []


def test_error_page_replacing_headers_with_exc_info(engine):
    import sys

    def app(environ, start_response):
        start_response("200 OK", PLAIN)
        try:
            current_session().add(Item(name="half"))
            raise KeyError("late")
        except KeyError:
            start_response("500 Internal Server Error", PLAIN, sys.exc_info())
            return [b"error page"]

    res = wrap(app, engine).get("/", status=500)
    assert res.body == b"error page"
    assert names(engine) == []

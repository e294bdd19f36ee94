"""SAVEPOINTs on SQLite (the pysqlite recipe) and the mpsqlite_wsgi.testing helpers."""

from __future__ import annotations

from wsgiref.validate import validator

import pytest
import webtest
from _wsgi_support import PLAIN, UNRAISABLE_FAILS, Item, names
from mpsqlite_wsgi import SessionMiddleware, current_session, enable_sqlite_transactions
from mpsqlite_wsgi.testing import environ_for, rollback_session, run_request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

pytestmark = UNRAISABLE_FAILS


def savepoint_app(environ, start_response):
    """Uses begin_nested() first thing, recovers from a failed savepoint, then answers."""
    session = current_session()
    with session.begin_nested():
        session.add(Item(name="sp-first"))
    try:
        with session.begin_nested():
            session.add(Item(name="dup"))
            session.add(Item(name="dup"))
    except IntegrityError:
        pass
    with session.begin_nested():
        session.add(Item(name="sp-last"))
    status = "500 Internal Server Error" if "fail" in environ["PATH_INFO"] else "200 OK"
    start_response(status, PLAIN)
    return [b",".join(n.encode() for n in session.scalars(select(Item.name).order_by(Item.name)))]


def transactional(engine):
    return enable_sqlite_transactions(engine) if engine.dialect.name == "sqlite" else engine


def test_savepoints_commit_with_outer_transaction(engine):
    app = webtest.TestApp(
        validator(SessionMiddleware(validator(savepoint_app), transactional(engine)))
    )
    assert app.get("/").body == b"sp-first,sp-last"
    assert names(engine) == ["sp-first", "sp-last"]


def test_savepoints_roll_back_with_outer_transaction(engine):
    app = webtest.TestApp(SessionMiddleware(savepoint_app, transactional(engine)))
    app.get("/fail", status=500)
    assert names(engine) == []


def test_stock_pysqlite_without_recipe_leaks_released_savepoints(sqlite_engine):
    """Why the recipe exists: sqlite3's legacy mode lets a RELEASE commit on its own."""
    app = webtest.TestApp(SessionMiddleware(savepoint_app, sqlite_engine))
    app.get("/fail", status=500)
    assert "sp-first" in names(sqlite_engine)


def test_recipe_rejects_bad_arguments(sqlite_engine):
    with pytest.raises(ValueError):
        enable_sqlite_transactions(sqlite_engine, mode="sometimes")


def test_immediate_mode_recipe(sqlite_engine):
    enable_sqlite_transactions(sqlite_engine, mode="IMMEDIATE")
    app = webtest.TestApp(SessionMiddleware(savepoint_app, sqlite_engine))
    app.get("/fail", status=500)
    assert names(sqlite_engine) == []
    app.get("/")
    assert names(sqlite_engine) == ["sp-first", "sp-last"]


def adding_app(environ, start_response):
    name = environ["PATH_INFO"].strip("/")
    current_session().add(Item(name=name))
    current_session().flush()
    start_response("404 Not Found" if name.startswith("missing") else "200 OK", PLAIN)
    return [str(len(current_session().scalars(select(Item)).all())).encode()]


def test_rollback_session_with_webtest(engine):
    app = webtest.TestApp(SessionMiddleware(adding_app, engine))
    with rollback_session(engine) as session:
        session.add(Item(name="fixture"))
        session.flush()
        assert app.get("/a", extra_environ=environ_for(session)).body == b"2"
        app.get("/missing", extra_environ=environ_for(session), status=404)  # vetoed
        assert app.get("/b", extra_environ=environ_for(session)).body == b"3"
        assert sorted(session.scalars(select(Item.name))) == ["a", "b", "fixture"]
    assert names(engine) == []


def test_rollback_session_with_savepoint_app(engine):
    app = SessionMiddleware(savepoint_app, engine)
    with rollback_session(engine) as session:
        status, _, _ = run_request(app, "/fail", session=session)
        assert status.startswith("500")
        assert session.scalars(select(Item.name)).all() == []
        status, _, body = run_request(app, "/", session=session)
        assert (status, body) == ("200 OK", b"sp-first,sp-last")
        assert sorted(session.scalars(select(Item.name))) == ["sp-first", "sp-last"]
    assert names(engine) == []


def test_run_request_without_session_commits_for_real(engine):
    status, headers, body = run_request(
        SessionMiddleware(adding_app, engine),
        "/real?x=1",
        method="post",
        body=b"ignored",
        headers={"X-Test": "1"},
    )
    assert status == "200 OK" and body == b"1" and ("Content-Type", PLAIN[0][1]) in headers
    assert names(engine) == ["real"]

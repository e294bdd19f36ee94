"""The CherryPy application tree and :func:`make_app`, the WSGI factory tests and benchmarks mount.

The WSGI stack, outermost first: request counters (for /status; a request ends when the
server closes its body, so streamed downloads count while they stream) -> ``mpsqlite_wsgi``'s
``SessionMiddleware`` (one SQLAlchemy session per request, committed when the status is below 400,
rolled back otherwise) -> the CherryPy application (handlers, static files, error pages).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import cherrypy
from mpsqlite_wsgi import SessionMiddleware
from sqlalchemy import Engine

from .views.api import Api
from .views.catalog import Authors, Books
from .views.export import Export
from .views.insights import Report, Search, home_data
from .views.rankings import Rankings
from .views.status import Metrics, Status
from .web import STATIC, RequestStats, Site, db, error_page, make_env, render

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class Root:
    """``/``: the home page; every section hangs off it as an attribute."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.books = Books()
        self.authors = Authors()
        self.search = Search()
        self.report = Report()
        self.rankings = Rankings()
        self.export = Export()
        self.status = Status()
        self.metrics = Metrics()
        self.api = Api()

    @cherrypy.expose
    def index(self, **_: Any) -> str:
        """Front page: catalogue counts, latest reviews and staff picks."""
        return render("home.html", **home_data(db()))


def app_config(debug: bool = False) -> dict[str, dict[str, Any]]:
    """CherryPy per-application config: static files, error pages, encoding."""
    return {
        "/": {
            "tools.trailing_slash.on": False,
            "tools.encode.on": True,
            "tools.encode.encoding": "utf-8",
            "error_page.default": error_page,
            "request.show_tracebacks": debug,
            "request.show_mismatched_params": debug,
        },
        "/static": {
            "tools.staticdir.on": True,
            "tools.staticdir.dir": str(STATIC),
            "tools.expires.on": True,
            "tools.expires.secs": 3600,
        },
    }


def make_cherrypy_app(site: Site, debug: bool = False) -> cherrypy.Application:
    """The bare CherryPy application (no session middleware) for ``site``."""
    return cherrypy.Application(Root(site), script_name="", config=app_config(debug))


class _Counted:
    """The app's iterable, passed through; the request counts as finished at ``close()``."""

    def __init__(self, result: Iterable[bytes], stats: RequestStats, failed: list[bool]) -> None:
        self._result = result
        self._stats = stats
        self._failed = failed  # [True] once the status was 5xx or the body raised
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._result
        except BaseException:
            self._failed[0] = True
            raise

    def close(self) -> None:
        """Close the app's iterable, then count the request as ended."""
        if self._ended:
            return
        self._ended = True
        try:
            if hasattr(self._result, "close"):
                self._result.close()
        finally:
            self._stats.end(self._failed[0])


def _counting(app: WSGIApp, stats: RequestStats) -> WSGIApp:
    def counted(environ: dict, start_response: Callable) -> Iterable[bytes]:
        failed = [False]

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            failed[0] = status.startswith("5")
            return start_response(status, headers, exc_info) if exc_info else \
                start_response(status, headers)

        stats.begin()
        try:
            result = app(environ, start)
        except BaseException:
            stats.end(True)
            raise
        return _Counted(result, stats, failed)

    return counted


def make_app(engine: Engine, *, secret: bytes | None = None, debug: bool = False) -> WSGIApp:
    """The example site as a WSGI application on ``engine``, wrapped in the session middleware.

    ``secret`` signs the CSRF cookies (random per process when omitted).
    """
    site = Site(engine=engine, secret=secret or secrets.token_bytes(32), env=make_env())
    wrapped = SessionMiddleware(make_cherrypy_app(site, debug), engine)
    app = _counting(wrapped, site.stats)
    app.site = site  # type: ignore[attr-defined]  # lets callers reach the engine and counters
    return app

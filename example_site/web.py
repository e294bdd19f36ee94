"""Shared plumbing of the page handlers: templates, CSRF tokens, pagination and JSON replies."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import math
import secrets
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import cherrypy
from jinja2 import Environment, FileSystemLoader, select_autoescape
from mpsqlite_wsgi import current_session
from sqlalchemy import Engine, Select, func, select
from sqlalchemy.orm import Session

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
CSRF_COOKIE = "csrftoken"
CSRF_FIELD = "csrf_token"


@dataclass
class RequestStats:
    """Thread-safe counters of the requests this site has served (shown on /status)."""

    total: int = 0
    in_flight: int = 0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self) -> None:
        """Count a request that starts."""
        with self._lock:
            self.total += 1
            self.in_flight += 1

    def end(self, failed: bool) -> None:
        """Count a request that finished; ``failed`` for 5xx replies."""
        with self._lock:
            self.in_flight -= 1
            self.errors += int(failed)


@dataclass
class Site:
    """What every handler needs: the engine, the template environment and the CSRF secret."""

    engine: Engine
    secret: bytes
    env: Environment
    stats: RequestStats = field(default_factory=RequestStats)


def make_env() -> Environment:
    """The Jinja2 environment with the site's filters and globals."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["price"] = lambda cents: f"${cents / 100:,.2f}"
    env.filters["stars"] = lambda r: "★" * round(r or 0) + "☆" * (5 - round(r or 0))
    env.filters["num"] = lambda n: f"{n:,}" if isinstance(n, int) else n
    env.globals["csrf_token"] = csrf_token
    env.globals["qs"] = query_string
    return env


def site() -> Site:
    """The :class:`Site` of the application serving the current request."""
    return cherrypy.request.app.root.site


def db() -> Session:
    """The request's SQLAlchemy session, opened and committed by the WSGI middleware."""
    return current_session()


def render(template: str, http_status: int = 200, **ctx: Any) -> str:
    """Render ``template`` with ``ctx``; a status >= 400 makes the middleware roll back."""
    cherrypy.response.status = http_status
    ctx.setdefault("path", cherrypy.request.path_info)
    return site().env.get_template(template).render(**ctx)


def json_reply(data: Any, status: int = 200) -> bytes:
    """Serialise ``data`` as the JSON body of the reply."""
    cherrypy.response.status = status
    cherrypy.response.headers["Content-Type"] = "application/json"
    return json.dumps(data, default=_json_value).encode()


def _json_value(value: Any) -> Any:
    """PostgreSQL's numeric sums and averages (Decimal) as JSON numbers; anything else as text."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def query_string(**params: Any) -> str:
    """``?a=1&b=2`` from the non-empty ``params`` (for pagination and filter links)."""
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(clean) if clean else ""


def _sign(nonce: str) -> str:
    return hmac.new(site().secret, nonce.encode(), hashlib.sha256).hexdigest()[:32]


def _valid_token(token: str | None) -> bool:
    if not token or "." not in token:
        return False
    nonce, sig = token.rsplit(".", 1)
    return hmac.compare_digest(sig, _sign(nonce))


def csrf_token() -> str:
    """The CSRF token of this browser (a signed double-submit cookie), set on first use."""
    req = cherrypy.request
    token = getattr(req, "_csrf_token", None)
    if token:
        return token
    cookie = req.cookie.get(CSRF_COOKIE)
    token = cookie.value if cookie is not None else None
    if not _valid_token(token):
        nonce = secrets.token_urlsafe(16)
        token = f"{nonce}.{_sign(nonce)}"
        out = cherrypy.response.cookie
        out[CSRF_COOKIE] = token
        out[CSRF_COOKIE]["path"] = "/"
        out[CSRF_COOKIE]["httponly"] = True
        out[CSRF_COOKIE]["samesite"] = "Lax"
    req._csrf_token = token
    return token


def check_csrf(submitted: str | None) -> None:
    """Reject (403) a form POST whose token does not match this browser's signed cookie."""
    cookie = cherrypy.request.cookie.get(CSRF_COOKIE)
    expected = cookie.value if cookie is not None else None
    if not (_valid_token(expected) and submitted and hmac.compare_digest(submitted, expected)):
        raise cherrypy.HTTPError(403, "CSRF token missing or invalid; reload the form and retry.")


def require_post() -> None:
    """Answer 405 unless the request is a POST."""
    if cherrypy.request.method != "POST":
        cherrypy.response.headers["Allow"] = "POST"
        raise cherrypy.HTTPError(405)


def text_param(value: Any) -> str:
    """A query parameter as one string: the first of repeated values, "" for anything else."""
    if isinstance(value, list):
        value = value[0] if value else ""
    return value if isinstance(value, str) else ""


def int_param(value: Any, default: int, lo: int = 1, hi: int = 10**9) -> int:
    """Parse a query parameter as an int clamped to [lo, hi]; garbage gives ``default``."""
    try:
        return min(hi, max(lo, int(value)))
    except (TypeError, ValueError):
        return default


@dataclass
class Page:
    """One page of a query's results plus what the pager needs."""

    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """Number of pages (at least 1)."""
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        """True when there is a previous page."""
        return self.page > 1

    @property
    def has_next(self) -> bool:
        """True when there is a next page."""
        return self.page < self.pages

    def as_dict(self) -> dict[str, int]:
        """Pager fields for the JSON API."""
        return {"page": self.page, "per_page": self.per_page, "total": self.total,
                "pages": self.pages}


def paginate(session: Session, stmt: Select, page: int, per_page: int,
             count_stmt: Select | None = None) -> Page:
    """Run ``stmt`` for ``page`` (1-based) and count its rows for the pager."""
    if count_stmt is None:
        count_stmt = select(func.count()).select_from(stmt.order_by(None).subquery())
    total = session.execute(count_stmt).scalar_one()
    rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return Page(rows, page, per_page, total)


def error_page(status: str, message: str, traceback: str, version: str) -> str:
    """CherryPy ``error_page.default`` hook: errors in the site's own look."""
    try:
        env = cherrypy.request.app.root.site.env
        return env.get_template("error.html").render(status=status, message=message,
                                                    path=cherrypy.request.path_info)
    except Exception:  # noqa: BLE001 - never fail while reporting a failure
        return f"<h1>{html.escape(status)}</h1><p>{html.escape(message)}</p>"

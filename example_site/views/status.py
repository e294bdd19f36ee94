"""``/status``: mpsqlite and the SQLAlchemy pool live (the page reloads its numbers every second).

mpsqlite runs every statement on the connection's own SQLite connection, in this process,
except reads that proved GIL-heavy, which run on worker processes started only when such a
read comes along; writers queue in a FIFO writer gate per database file and commits share
fsyncs (group commit). :func:`status_data` turns ``mpsqlite.pool_status()`` and the
engine's pool into plain numbers; ``/api/status`` serves them as JSON.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import cherrypy
from sqlalchemy import Engine

from ..db import uses_mpsqlite
from ..web import render, site

_STARTED = time.time()
WORKER_STATES = ("busy", "leased", "idle")


def _pool_status() -> tuple[list[dict[str, Any]], str | None]:
    try:
        import mpsqlite
    except ImportError as exc:
        return [], f"mpsqlite cannot be imported: {exc}"
    try:
        return [dict(p) for p in mpsqlite.pool_status()], None
    except Exception as exc:  # noqa: BLE001 - the page must render whatever the pool does
        return [], f"pool_status() failed: {exc!r}"


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 2) if den else None


def _with_summary(pool: dict[str, Any]) -> dict[str, Any]:
    """Add the derived numbers the page shows to one ``pool_status()`` entry."""
    workers = pool.get("workers") or []
    for state in WORKER_STATES:
        pool[state] = sum(1 for w in workers if w.get("state") == state)
    local = pool.get("local_statements", 0)
    offloaded = pool.get("offloaded_statements", 0)
    pool["offloaded_percent"] = round(100 * offloaded / (local + offloaded), 1) if (
        local + offloaded) else 0.0
    pool["commits_per_fsync"] = _ratio(pool.get("commits", 0), pool.get("fsyncs", 0))
    grants = pool.get("writer_grants", 0)
    waited = pool.get("writer_wait_seconds", 0.0)
    pool["writer_wait_ms_avg"] = round(1000 * waited / grants, 2) if grants else None
    pool["writer_wait_seconds"] = round(waited, 3)
    return pool


def sqlalchemy_pool(engine: Engine) -> dict[str, Any]:
    """The engine's connection pool as fields; None where its pool class has no such number."""
    p = engine.pool

    def field(name: str) -> int | None:
        method = getattr(p, name, None)
        try:
            return int(method()) if callable(method) else None
        except Exception:  # noqa: BLE001 - a pool class of its own: show what it has
            return None

    size, checked_in, checked_out, overflow = (
        field("size"), field("checkedin"), field("checkedout"), field("overflow"))
    return {
        "class": type(p).__name__,
        "size": size,
        "checked_out": checked_out,
        "checked_in": checked_in,
        # SQLAlchemy counts overflow from -size (no connection open yet) upwards:
        # what is shown is the connections open beyond the pool's size.
        "overflow": None if overflow is None else max(overflow, 0),
        "open": None if None in (checked_in, checked_out) else checked_in + checked_out,
    }


def status_data() -> dict[str, Any]:
    """Everything /status shows: engine, mpsqlite databases, SQLAlchemy pool, request counters."""
    s = site()
    engine = s.engine
    data: dict[str, Any] = {
        "engine": engine.url.render_as_string(hide_password=True),
        "dialect": f"{engine.dialect.name}+{engine.url.get_driver_name()}",
        "uses_mpsqlite": uses_mpsqlite(engine),
        "pools": [],
        "pool_error": None,
        "sqlalchemy_pool": sqlalchemy_pool(engine),
        "requests": {"total": s.stats.total, "in_flight": s.stats.in_flight,
                     "errors": s.stats.errors},
        "server": {"pid": os.getpid(), "threads": threading.active_count(),
                   "uptime_s": round(time.time() - _STARTED, 1)},
    }
    if data["uses_mpsqlite"]:
        pools, data["pool_error"] = _pool_status()
        data["pools"] = [_with_summary(p) for p in pools]
    return data


class Status:
    """``/status``: HTML page; the numbers come from :func:`status_data`."""

    @cherrypy.expose
    def index(self, **_: Any) -> str:
        """Render the current numbers; the page's script reloads them in place."""
        cherrypy.response.headers["Cache-Control"] = "no-store"
        return render("status.html", status=status_data())

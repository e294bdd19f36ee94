"""``/status``: the mpsqlite worker pool live (the page polls ``/api/status`` every second)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import cherrypy

from ..db import uses_mpsqlite
from ..web import render, site

_STARTED = time.time()


def _pool_status() -> tuple[list[dict[str, Any]], str | None]:
    try:
        import mpsqlite
    except ImportError as exc:
        return [], f"mpsqlite cannot be imported: {exc}"
    try:
        return list(mpsqlite.pool_status()), None
    except Exception as exc:  # noqa: BLE001 - the page must render whatever the pool does
        return [], f"pool_status() failed: {exc!r}"


def status_data() -> dict[str, Any]:
    """Everything /status shows: engine, mpsqlite pools, SQLAlchemy pool and request counters."""
    s = site()
    engine = s.engine
    data: dict[str, Any] = {
        "engine": engine.url.render_as_string(hide_password=True),
        "dialect": f"{engine.dialect.name}+{engine.url.get_driver_name()}",
        "uses_mpsqlite": uses_mpsqlite(engine),
        "pools": [],
        "pool_error": None,
        "sqlalchemy_pool": engine.pool.status(),
        "requests": {"total": s.stats.total, "in_flight": s.stats.in_flight,
                     "errors": s.stats.errors},
        "server": {"pid": os.getpid(), "threads": threading.active_count(),
                   "uptime_s": round(time.time() - _STARTED, 1)},
    }
    if data["uses_mpsqlite"]:
        data["pools"], data["pool_error"] = _pool_status()
    for pool in data["pools"]:
        workers = pool.get("workers") or []
        pool["busy"] = sum(1 for w in workers if w.get("state") != "idle")
        pool["idle"] = len(workers) - pool["busy"]
    return data


class Status:
    """``/status``: HTML page; the numbers come from :func:`status_data`."""

    @cherrypy.expose
    def index(self, **_: Any) -> str:
        """Render the current numbers; the page's script refreshes them in place."""
        cherrypy.response.headers["Cache-Control"] = "no-store"
        return render("status.html", status=status_data())

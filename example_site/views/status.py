"""``/status`` (mpsqlite and the SQLAlchemy pool, live) and ``/metrics`` (Prometheus).

mpsqlite runs every statement on the connection's own SQLite connection, in this process,
except reads that proved GIL-heavy, which run on worker processes started only when such a
read comes along; writers queue in a FIFO writer gate per database file and commits share
fsyncs (group commit). :func:`status_data` turns ``mpsqlite.pool_status()``,
``mpsqlite.metrics.snapshot()`` (totals that never go back) and the engine's pool into
plain numbers, with rates over the last few seconds; ``/api/status`` serves them as JSON,
which the page's charts poll.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any

import cherrypy
from sqlalchemy import Engine

from ..db import uses_mpsqlite
from ..web import render, site

_STARTED = time.time()
WORKER_STATES = ("busy", "leased", "idle")
#: Rates are taken over about this many seconds of the samples /status requests leave.
RATE_WINDOW = 5.0
_RATED = ("caller_reads", "caller_writes", "worker_reads", "commits", "fsyncs",
          "writer_grants", "writer_wait_seconds")


def _pool_status() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], str | None]:
    try:
        import mpsqlite
        import mpsqlite.metrics
    except ImportError as exc:
        return [], {}, f"mpsqlite cannot be imported: {exc}"
    try:
        return ([dict(p) for p in mpsqlite.pool_status()], mpsqlite.metrics.snapshot(), None)
    except Exception as exc:  # noqa: BLE001 - the page must render whatever the pool does
        return [], {}, f"pool_status() failed: {exc!r}"


class _Rates:
    """Per-second rates of mpsqlite's totals, from the samples the status requests take."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, dict[str, dict[str, Any]]]] = deque()

    def update(self, totals: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Record ``totals`` now; the rates per path since a sample about RATE_WINDOW ago."""
        now = time.monotonic()
        with self._lock:
            samples = self._samples
            if not samples or now - samples[-1][0] >= 0.2:
                samples.append((now, totals))
            while len(samples) > 1 and now - samples[1][0] >= RATE_WINDOW:
                samples.popleft()
            then, old = samples[0]
        dt = now - then
        if dt < 0.5:
            return {}
        return {path: _rates(old.get(path), new, dt) for path, new in totals.items()}


def _rates(old: dict[str, Any] | None, new: dict[str, Any], dt: float) -> dict[str, Any]:
    old = old or dict.fromkeys(_RATED, 0)
    d = {k: new[k] - old[k] for k in _RATED}
    statements = d["caller_reads"] + d["caller_writes"] + d["worker_reads"]
    return {
        "seconds": round(dt, 1),
        "caller_reads": round(d["caller_reads"] / dt, 1),
        "caller_writes": round(d["caller_writes"] / dt, 1),
        "worker_reads": round(d["worker_reads"] / dt, 1),
        "statements": round(statements / dt, 1),
        "workers_percent": round(100 * d["worker_reads"] / statements, 1) if statements else 0.0,
        "commits": round(d["commits"] / dt, 1),
        "commits_per_fsync": round(d["commits"] / d["fsyncs"], 2) if d["fsyncs"] else None,
        "writer_wait_ms_avg": (round(1000 * d["writer_wait_seconds"] / d["writer_grants"], 2)
                               if d["writer_grants"] else None),
    }


_RATES = _Rates()


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 2) if den else None


def _with_summary(pool: dict[str, Any], totals: dict[str, Any] | None,
                  rates: dict[str, Any] | None) -> dict[str, Any]:
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
    pool["totals"] = totals
    pool["rates"] = rates
    caller_rate = round(rates["caller_reads"] + rates["caller_writes"], 1) if rates else None
    pool["caller"] = {
        "pid": os.getpid(),
        "statements": (totals["caller_reads"] + totals["caller_writes"]) if totals else local,
        "per_second": caller_rate,
        "state": "serving" if caller_rate else "idle",
    }
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
        "time": round(time.time(), 3),
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
        pools, totals, data["pool_error"] = _pool_status()
        rates = _RATES.update(totals)
        data["pools"] = [_with_summary(p, totals.get(p["database"]), rates.get(p["database"]))
                         for p in pools]
    return data


class Status:
    """``/status``: HTML page; the numbers come from :func:`status_data`."""

    @cherrypy.expose
    def index(self, **_: Any) -> str:
        """Render the current numbers; the page's script reloads them in place."""
        cherrypy.response.headers["Cache-Control"] = "no-store"
        return render("status.html", status=status_data())


class Metrics:
    """``/metrics``: mpsqlite's Prometheus metrics in the text format.

    Created with the application, so that under gunicorn every process registers
    (``PROMETHEUS_MULTIPROC_DIR`` set: each one writes its counts to the shared files)."""

    def __init__(self) -> None:
        try:
            import mpsqlite.metrics

            mpsqlite.metrics.register()
            self.error: str | None = None
        except ImportError as exc:
            self.error = (f"prometheus_client is not installed ({exc}): "
                          "pip install mpsqlite[metrics]")

    @cherrypy.expose
    def index(self, **_: Any) -> bytes:
        """The exposition of this process, or of every process in multiprocess mode."""
        cherrypy.response.headers["Cache-Control"] = "no-store"
        if self.error is not None:
            cherrypy.response.status = 501
            cherrypy.response.headers["Content-Type"] = "text/plain; charset=utf-8"
            return self.error.encode()
        import mpsqlite.metrics

        body, content_type = mpsqlite.metrics.exposition()
        cherrypy.response.headers["Content-Type"] = content_type
        return body

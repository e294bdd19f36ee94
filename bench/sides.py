"""The two measured sides: plain ``sqlite3`` / ``sqlite://`` and ``mpsqlite`` / ``sqlite+mpsqlite://``.

Both sides are opened with the same arguments (``timeout=5``, ``check_same_thread=False`` so a
connection made here can be handed to the one thread that uses it); mpsqlite gets ``workers``.
"""

from __future__ import annotations

import platform
import sqlite3
import sys
from pathlib import Path
from typing import Any

PLAIN = "plain"
MP = "mp"
TIMEOUT = 5.0


def connect(side: str, path: Path | str, workers: int | None = None) -> Any:
    """A DB-API connection to ``path`` on the given side."""
    if side == PLAIN:
        return sqlite3.connect(str(path), timeout=TIMEOUT, check_same_thread=False)
    import mpsqlite

    return mpsqlite.connect(str(path), timeout=TIMEOUT, check_same_thread=False, workers=workers)


def sqlalchemy_url(side: str, path: Path | str, workers: int | None = None) -> str:
    """The SQLAlchemy URL for ``path`` on the given side."""
    if side == PLAIN:
        return f"sqlite:///{path}"
    return f"sqlite+mpsqlite:///{path}?workers={workers}"


def shutdown_mp() -> None:
    """Stop every mpsqlite pool of this process (between scenarios, so none idles in the next)."""
    mpsqlite = sys.modules.get("mpsqlite")
    if mpsqlite is not None and hasattr(mpsqlite, "shutdown"):
        mpsqlite.shutdown()


def mp_available() -> str | None:
    """None when mpsqlite imports, else why not."""
    try:
        import mpsqlite
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    missing = [n for n in ("connect", "pool_status", "shutdown") if not hasattr(mpsqlite, n)]
    return f"mpsqlite lacks {', '.join(missing)}" if missing else None


def versions() -> dict[str, str]:
    """Versions of everything that shapes the numbers."""
    out = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }
    for name in ("mpsqlite", "sqlalchemy", "cheroot", "cherrypy", "gunicorn"):
        try:
            mod = __import__(name)
            out[name] = str(getattr(mod, "__version__", "?"))
        except Exception:
            out[name] = "not importable"
    return out

"""WSGI entry point for multi-process servers: ``example_site.wsgi:application``.

Run the site under gunicorn, one mpsqlite pool per server process::

    MPSQLITE_SITE_DB=/srv/shop.db gunicorn -w 4 -k gthread --threads 8 \\
        -b 127.0.0.1:8000 example_site.wsgi:application

(``python -m example_site --processes 4`` does the same.) Settings, from the environment:

``MPSQLITE_SITE_DB``
    SQLite file, created and seeded when missing (default ``example_site.db`` in the current
    directory). The first process to start seeds it while holding an exclusive lock on
    ``<file>.lock``; the others wait on the lock and then find the data, so any number of
    gunicorn workers may start at once. Seeding a large data set can outlast gunicorn's
    ``--timeout`` (30 s): seed first (``python -m example_site --db FILE``) or raise it.
``MPSQLITE_SITE_URL``
    an SQLAlchemy URL instead (``sqlite:///...`` or ``postgresql+psycopg://...``); its lock and
    secret files are then kept in the temporary directory, named after the URL.
``MPSQLITE_SITE_WORKERS``
    mpsqlite worker processes per server process (default: one per core).
``MPSQLITE_SITE_SEED_ROWS``
    scale of the seed data in books (default 20,000).
``MPSQLITE_SITE_POOL_SIZE``
    SQLAlchemy pool size per process (default 16; match ``--threads``).
``MPSQLITE_SITE_SECRET``
    secret that signs the CSRF cookies. Every process must use the same one, or a form one
    process served is refused by another; when unset, one is made once and kept next to the
    database in ``<file>.secret`` (mode 0600).

``application`` is built on first access, after gunicorn forks its workers (each process
opens its own engine; nothing is built by importing this module).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .db import DEFAULT_DB, default_url, make_engine
from .seed import DEFAULT_BOOKS, ensure_seeded


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _shared_secret(path: str) -> bytes:
    """The secret kept in ``path``, made on first use (called holding the lock)."""
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
        if secret:
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


def _int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None


def create_application(env: Mapping[str, str] = os.environ) -> Callable[..., Any]:
    """Build the site from the settings in ``env`` (see the module docstring), seeding first."""
    from .app import make_app

    seed_rows = _int(env, "MPSQLITE_SITE_SEED_ROWS", DEFAULT_BOOKS) or DEFAULT_BOOKS
    pool_size = _int(env, "MPSQLITE_SITE_POOL_SIZE", 16) or 16
    url = env.get("MPSQLITE_SITE_URL")
    secret = env.get("MPSQLITE_SITE_SECRET", "").encode() or None
    if url:
        # no file to keep the lock and secret beside: a per-URL name in the temp directory
        base = os.path.join(tempfile.gettempdir(), "example_site-"
                            + hashlib.sha256(url.encode()).hexdigest()[:16])
    else:
        base = os.path.abspath(env.get("MPSQLITE_SITE_DB") or DEFAULT_DB)
        url = default_url(base, _int(env, "MPSQLITE_SITE_WORKERS", None))
    engine = make_engine(url, pool_size=pool_size)
    with file_lock(base + ".lock"):
        ensure_seeded(engine, seed_rows)
        if secret is None:
            secret = _shared_secret(base + ".secret")
    return make_app(engine, secret=secret)


_application: Callable[..., Any] | None = None


def __getattr__(name: str) -> Any:
    """``application``, built by the first process that asks for it."""
    global _application
    if name == "application":
        if _application is None:
            _application = create_application()
        return _application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

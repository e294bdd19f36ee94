"""Engine construction and the SQLite-only full-text index (FTS5) of the example site.

The site runs unchanged on ``sqlite+mpsqlite://``, stock ``sqlite://`` or PostgreSQL; this module
holds the few places where the backend matters.
"""

from __future__ import annotations

import os
import weakref

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from . import scoring

DEFAULT_DB = "example_site.db"
"""Database file used when neither ``--db`` nor ``--url`` is given (relative to the cwd)."""


def default_url(db_path: str, workers: int | None = None) -> str:
    """The mpsqlite engine URL for the SQLite file ``db_path`` (absolute path)."""
    query = f"?workers={workers}" if workers else ""
    return f"sqlite+mpsqlite:///{os.path.abspath(db_path)}{query}"


def uses_mpsqlite(engine: Engine) -> bool:
    """True when ``engine`` talks to the database through mpsqlite's worker pool."""
    return engine.url.get_driver_name() == "mpsqlite"


def make_engine(url: str, *, pool_size: int = 16) -> Engine:
    """Create the site's engine; stock SQLite files get WAL mode and a 30 s busy timeout.

    SQLite connections also get the ranking's Python function (:mod:`.scoring`)."""
    kwargs: dict = {"pool_size": pool_size, "max_overflow": pool_size}
    if url.startswith("sqlite:") or url.startswith("sqlite+pysqlite:"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    try:
        engine = create_engine(url, **kwargs)
    except TypeError:  # a pool class without these arguments (in-memory SQLite, a dialect's own)
        kwargs.pop("pool_size", None)
        kwargs.pop("max_overflow", None)
        engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", scoring.register)
    if engine.dialect.name == "sqlite" and not uses_mpsqlite(engine):
        # mpsqlite switches files to WAL itself; stock sqlite3 gets the same journal mode
        # (synchronous stays at its durable default, like mpsqlite's group commit)
        event.listen(engine, "connect", _wal_on_connect)
    return engine


def _wal_on_connect(dbapi_conn, _record) -> None:
    if dbapi_conn.execute("PRAGMA database_list").fetchone()[2]:  # a file, not :memory:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")


_FTS_PRESENT: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()

_FTS_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS book_fts USING fts5("
    "title, author, description, tokenize='porter unicode61')",
    "CREATE TRIGGER IF NOT EXISTS book_fts_ai AFTER INSERT ON book BEGIN "
    "INSERT INTO book_fts(rowid, title, author, description) VALUES (new.id, new.title, "
    "(SELECT name FROM author WHERE id = new.author_id), new.description); END",
    "CREATE TRIGGER IF NOT EXISTS book_fts_ad AFTER DELETE ON book BEGIN "
    "DELETE FROM book_fts WHERE rowid = old.id; END",
    "CREATE TRIGGER IF NOT EXISTS book_fts_au AFTER UPDATE ON book BEGIN "
    "DELETE FROM book_fts WHERE rowid = old.id; "
    "INSERT INTO book_fts(rowid, title, author, description) VALUES (new.id, new.title, "
    "(SELECT name FROM author WHERE id = new.author_id), new.description); END",
    "CREATE TRIGGER IF NOT EXISTS author_fts_au AFTER UPDATE OF name ON author BEGIN "
    "UPDATE book_fts SET author = new.name "
    "WHERE rowid IN (SELECT id FROM book WHERE author_id = new.id); END",
)


def create_fts(engine: Engine) -> bool:
    """Create and fill the FTS5 index of books on SQLite; return False where FTS5 is missing."""
    _FTS_PRESENT[engine] = False
    if engine.dialect.name != "sqlite":
        return False
    try:
        with engine.begin() as conn:
            for ddl in _FTS_DDL:
                conn.exec_driver_sql(ddl)
            conn.exec_driver_sql("DELETE FROM book_fts")
            conn.exec_driver_sql(
                "INSERT INTO book_fts(rowid, title, author, description) "
                "SELECT b.id, b.title, a.name, b.description FROM book b "
                "JOIN author a ON a.id = b.author_id"
            )
    except OperationalError:
        return False
    _FTS_PRESENT[engine] = True
    return True


def has_score_function(engine: Engine) -> bool:
    """True when ``engine``'s connections define ``bookshop_score`` (SQLite via make_engine)."""
    return engine.dialect.name == "sqlite" and event.contains(engine, "connect", scoring.register)


def has_fts(engine: Engine) -> bool:
    """True when the ``book_fts`` table exists (cached on the engine after the first check)."""
    cached = _FTS_PRESENT.get(engine)
    if cached is not None:
        return cached
    found = False
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM sqlite_master WHERE name = 'book_fts'")
            ).scalar_one() > 0
    _FTS_PRESENT[engine] = found
    return found

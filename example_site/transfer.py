"""``python -m example_site transfer``: copy the site's database to another engine, e.g. PostgreSQL.

Usage::

    python -m example_site transfer --from sqlite+mpsqlite:///shop.db \\
        --to postgresql+psycopg://shop:secret@localhost/shop
    python -m example_site --url postgresql+psycopg://shop:secret@localhost/shop

Every table of the site's schema is copied through SQLAlchemy: the schema is created on the
target from the models (``metadata.create_all``), rows go over in foreign-key order in batches,
and on PostgreSQL each table's id sequence is moved past the copied ids so that new rows get
fresh ones. It all happens in one transaction on the target: a row the target refuses (say,
a review of a book that no longer exists, which SQLite accepted with foreign keys off) rolls
the whole copy back and names the table. The target must not hold site data yet. Stop the
site while it runs: writes made during the copy are not carried over.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Engine, Table, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from .db import create_fts, make_engine
from .models import Base

BATCH = 2_000
"""Rows read and inserted per round trip."""

ProgressFn = Callable[[str, int, int], None]
"""``progress(table, done, total)`` called after every inserted batch."""


class TransferError(Exception):
    """The copy cannot start or was refused by the target; nothing was committed there."""


def _count(conn: Connection, table: Table) -> int:
    return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _check_target_empty(target: Engine) -> None:
    existing = set(inspect(target).get_table_names())
    with target.connect() as conn:
        full = [t.name for t in Base.metadata.sorted_tables
                if t.name in existing and _count(conn, t)]
    if full:
        raise TransferError(
            f"the target already holds site data (tables {', '.join(full)}); "
            "transfer into an empty database, or drop those tables first")


def _copy_table(src: Connection, dst: Connection, table: Table, batch: int,
                progress: ProgressFn | None) -> int:
    total = _count(src, table)
    done = 0
    query = select(table).order_by(*table.primary_key.columns)
    rows = src.execution_options(yield_per=batch).execute(query)
    for chunk in rows.partitions(batch):
        try:
            dst.execute(table.insert(), [dict(row._mapping) for row in chunk])
        except SQLAlchemyError as exc:
            raise TransferError(
                f"the target refused rows {done + 1}-{done + len(chunk)} of table "
                f"{table.name}: {exc.__class__.__name__}: {getattr(exc, 'orig', exc)}"
            ) from exc
        done += len(chunk)
        if progress:
            progress(table.name, done, total)
    if progress and not total:
        progress(table.name, 0, 0)
    return done


def _reset_sequences(conn: Connection) -> None:
    """Make each serial id column's sequence hand out max(id) + 1 next (1 on an empty table)."""
    quote = conn.dialect.identifier_preparer.quote
    for table in Base.metadata.sorted_tables:
        col = table.autoincrement_column
        if col is None:
            continue
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{quote(table.name)}', '{col.name}'), "
            f"(SELECT COALESCE(MAX({quote(col.name)}), 0) + 1 FROM {quote(table.name)}), false)")


def transfer(source: Engine, target: Engine, *, batch: int = BATCH,
             progress: ProgressFn | None = None) -> dict[str, int]:
    """Copy every table of the site from ``source`` to ``target``; return rows per table."""
    missing = [t.name for t in Base.metadata.sorted_tables
               if not inspect(source).has_table(t.name)]
    if missing:
        raise TransferError(f"the source is not an example_site database (no table "
                            f"{', '.join(missing)})")
    _check_target_empty(target)
    copied: dict[str, int] = {}
    with source.connect() as src, target.begin() as dst:
        Base.metadata.create_all(dst)
        for table in Base.metadata.sorted_tables:
            copied[table.name] = _copy_table(src, dst, table, batch, progress)
        if dst.dialect.name == "postgresql":
            _reset_sequences(dst)
        for table in Base.metadata.sorted_tables:
            if _count(dst, table) != copied[table.name]:  # pragma: no cover - a target bug
                raise TransferError(f"table {table.name}: {copied[table.name]} rows sent, "
                                    f"{_count(dst, table)} arrived")
    if target.dialect.name == "sqlite":
        create_fts(target)  # the search index is SQLite-only and rebuilt, not copied
    return copied


def other_tables(source: Engine) -> list[str]:
    """Tables of ``source`` outside the site's schema (not copied), bar SQLite's search index."""
    ours = set(Base.metadata.tables)
    return sorted(name for name in inspect(source).get_table_names()
                  if name not in ours and not name.startswith("book_fts"))


def _print_table(table: str, done: int, total: int) -> None:
    if done == total:
        print(f"  {table:<10} {done:>10,} rows", flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m example_site transfer``."""
    p = argparse.ArgumentParser(
        prog="python -m example_site transfer",
        description="Copy the example site's tables from one database to another, e.g. from "
                    "its SQLite file to PostgreSQL; then run the site with --url TO.")
    p.add_argument("--from", dest="source", required=True, metavar="URL",
                   help="SQLAlchemy URL of the site's database, e.g. sqlite+mpsqlite:///shop.db")
    p.add_argument("--to", dest="target", required=True, metavar="URL",
                   help="SQLAlchemy URL of an empty database, e.g. "
                        "postgresql+psycopg://user:password@host/shop")
    p.add_argument("--batch", type=int, default=BATCH,
                   help=f"rows per insert round trip (default {BATCH})")
    return p


def _show(url) -> str:
    return url.render_as_string(hide_password=True)


def _engines(args: argparse.Namespace) -> tuple[Engine, Engine]:
    try:
        source = make_engine(args.source, pool_size=1)
    except (SQLAlchemyError, ImportError) as exc:
        raise TransferError(f"--from: {exc}") from exc
    try:
        return source, make_engine(args.target, pool_size=1)
    except (SQLAlchemyError, ImportError) as exc:  # e.g. psycopg not installed
        source.dispose()
        raise TransferError(f"--to: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the transfer command; 0 on success, 1 when the copy failed (target left as it was)."""
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        source, target = _engines(args)
    except TransferError as exc:
        print(f"example_site transfer: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        print(f"example_site transfer: {_show(source.url)} -> {_show(target.url)}", flush=True)
        copied = transfer(source, target, batch=max(1, args.batch), progress=_print_table)
        skipped = other_tables(source)
    except (TransferError, SQLAlchemyError) as exc:
        print(f"example_site transfer: failed, nothing was committed to the target: {exc}",
              file=sys.stderr, flush=True)
        return 1
    finally:
        source.dispose()
        target.dispose()
    if skipped:
        print(f"example_site transfer: not copied, not part of the site: {', '.join(skipped)}")
    print(f"example_site transfer: copied {sum(copied.values()):,} rows in "
          f"{time.monotonic() - started:.1f} s; serve it with: "
          "python -m example_site --url TO (the --to URL)", flush=True)
    return 0

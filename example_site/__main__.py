"""``python -m example_site``: seed the database on first run, then serve the site with CherryPy
(or, with ``--processes N``, with N gunicorn processes)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from .db import DEFAULT_DB, default_url, make_engine, uses_mpsqlite
from .seed import DEFAULT_BOOKS, counts_for, ensure_seeded
from .serving import exec_gunicorn, gunicorn_argv, gunicorn_env, port_problem


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m example_site",
        description="Example bookshop on CherryPy + SQLAlchemy, by default on mpsqlite.",
    )
    p.add_argument("--db", default=DEFAULT_DB,
                   help=f"SQLite database file, created and seeded if new (default {DEFAULT_DB})")
    p.add_argument("--url", help="SQLAlchemy engine URL instead of --db/--workers, e.g. "
                   "sqlite:///shop.db or postgresql+psycopg://user@host/shop (for comparison)")
    p.add_argument("--workers", type=int, default=None,
                   help="mpsqlite worker processes (default: one per core)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--threads", type=int, default=16,
                   help="CherryPy request threads (default 16)")
    p.add_argument("--seed-rows", type=int, default=DEFAULT_BOOKS, metavar="BOOKS",
                   help=f"scale of the seed data in books (default {DEFAULT_BOOKS}; authors "
                        "= books/8, reviews = 3 x books)")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="serve with N processes (gunicorn with the example_site.wsgi entry "
                        "point) instead of one CherryPy process")
    p.add_argument("--access-log", action="store_true", help="log every request to stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks on error pages")
    return p


class Progress:
    """A one-line progress bar on a terminal, one line per finished stage otherwise."""

    def __init__(self, out: TextIO = sys.stderr, width: int = 28) -> None:
        self.out = out
        self.width = width
        self.tty = out.isatty()
        self.started = time.monotonic()

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Report ``done`` of ``total`` rows of ``stage``."""
        if not self.tty and done < total:
            return
        frac = done / total if total else 1.0
        fill = int(frac * self.width)
        bar = "#" * fill + "-" * (self.width - fill)
        line = f"  seeding {stage:<13} [{bar}] {frac:4.0%}  {done:>9,}/{total:,}"
        if self.tty:
            self.out.write("\r" + line + ("\n" if done >= total else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


def _log_errors_to_stderr() -> None:
    import cherrypy

    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR)
    cherrypy.log.error_log.addHandler(handler)


def serve(app, host: str, port: int, threads: int, access_log: bool = False) -> None:
    """Serve the WSGI ``app`` with CherryPy's HTTP server until interrupted."""
    import cherrypy

    cherrypy.tree.graft(app, "")
    cherrypy.config.update({
        "server.socket_host": host,
        "server.socket_port": port,
        "server.thread_pool": threads,
        "server.socket_queue_size": 128,
        "engine.autoreload.on": False,
        "checker.on": False,
        "log.screen": access_log,
    })
    if not access_log:
        _log_errors_to_stderr()
    if hasattr(cherrypy.engine, "signal_handler"):
        cherrypy.engine.signal_handler.subscribe()
    cherrypy.engine.start()
    print(f"example_site: serving on http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    cherrypy.engine.block()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, seed the database when it is new and serve until interrupted."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["transfer"]:  # python -m example_site transfer --from URL --to URL
        from .transfer import main as transfer_main

        return transfer_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.processes is not None and args.processes < 1:
        parser.error("--processes must be at least 1")
    problem = port_problem(args.host, args.port)
    if problem:  # before seeding, which can take a while
        print(f"example_site: {problem}", file=sys.stderr)
        return 2
    url = args.url or default_url(args.db, args.workers)
    engine = make_engine(url, pool_size=args.threads)
    print(f"example_site: database {engine.url.render_as_string(hide_password=True)}",
          flush=True)
    started = time.monotonic()
    counts = counts_for(args.seed_rows)
    progress = Progress()
    if ensure_seeded(engine, args.seed_rows, progress):
        total = sum(counts.values())
        print(f"example_site: seeded {total:,} rows in {time.monotonic() - started:.1f} s",
              flush=True)
    if args.processes:
        engine.dispose()
        if uses_mpsqlite(engine):
            import mpsqlite

            mpsqlite.shutdown()  # gunicorn's processes start their own workers
        print(f"example_site: serving on http://{args.host}:{args.port}/ with "
              f"{args.processes} gunicorn processes (Ctrl-C to stop)", flush=True)
        return exec_gunicorn(
            gunicorn_argv(args.processes, args.host, args.port, args.threads, args.access_log),
            gunicorn_env(None if args.url else args.db, args.url, args.workers, args.seed_rows,
                         args.threads))
    from .app import make_app

    app = make_app(engine, debug=args.debug)
    try:
        serve(app, args.host, args.port, args.threads, args.access_log)
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

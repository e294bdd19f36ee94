"""Server process of the web scenario: the example site on cheroot, on 127.0.0.1.

``python -m bench._webserver URL THREADS`` prints ``LISTENING <port>`` once it accepts
connections and serves until its stdin closes, so it never outlives the benchmark.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any


def make_engine(url: str) -> Any:
    """The site's own engine factory when it has one (same settings for both sides)."""
    try:
        from example_site.db import make_engine as site_engine
    except ImportError:
        from sqlalchemy import create_engine

        return create_engine(url)
    return site_engine(url)


def main(argv: list[str]) -> int:
    """Serve the example site for ``argv = [url, threads]`` until stdin reaches EOF."""
    url, threads = argv[0], int(argv[1])
    from cheroot import wsgi

    from example_site.app import make_app

    engine = make_engine(url)
    server = wsgi.Server(("127.0.0.1", 0), make_app(engine), numthreads=threads)
    server.prepare()
    print(f"LISTENING {server.bind_addr[1]}", flush=True)
    # The parent reads only that line: whatever the site logs to stdout later
    # goes to stderr (the parent's log file), or a full pipe would block every
    # request thread that logs.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serving = threading.Thread(target=server.serve, daemon=True)
    serving.start()
    sys.stdin.read()  # returns when the parent closes the pipe or exits
    server.stop()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

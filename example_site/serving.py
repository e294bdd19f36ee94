"""Starting servers for the command line: the free-port check and ``--processes`` via gunicorn.

``python -m example_site --processes N`` seeds the database in this process, then replaces
itself (``exec``) with ``gunicorn -w N -k gthread`` serving :mod:`example_site.wsgi`, which
finds the database through the environment.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import secrets
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

#: The directory holding the example_site package (put on gunicorn's path).
PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def port_problem(host: str, port: int) -> str | None:
    """Why the site cannot listen on ``host:port`` (one line naming ``--port``), or None."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as exc:
        return f"cannot listen on {host}:{port}: {exc}; choose another address with --host"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                other = port + 1 if port < 65535 else 8080
                return (f"port {port} on {host} is already in use; stop what is using it or "
                        f"choose another with --port (e.g. --port {other})")
            reason = exc.strerror or exc
            return f"cannot listen on {host}:{port}: {reason}; choose another with --port"
    return None


def gunicorn_argv(processes: int, host: str, port: int, threads: int,
                  access_log: bool = False) -> list[str]:
    """The command line of a gunicorn serving :mod:`example_site.wsgi` with ``processes``."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    argv = [sys.executable, "-m", "gunicorn", "--workers", str(processes),
            "--worker-class", "gthread", "--threads", str(threads), "--bind", bind,
            "--graceful-timeout", "10"]
    if access_log:
        argv += ["--access-logfile", "-"]
    return argv + ["example_site.wsgi:application"]


def gunicorn_env(db: str | None, url: str | None, workers: int | None, seed_rows: int,
                 threads: int, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment :mod:`example_site.wsgi` reads, for the database this CLI chose."""
    env = dict(base)
    if url:
        env["MPSQLITE_SITE_URL"] = url
    elif db:
        env["MPSQLITE_SITE_DB"] = os.path.abspath(db)
    if workers:
        env["MPSQLITE_SITE_WORKERS"] = str(workers)
    env["MPSQLITE_SITE_SEED_ROWS"] = str(seed_rows)
    env["MPSQLITE_SITE_POOL_SIZE"] = str(threads)
    # one CSRF secret for every process: a form served by one is accepted by the others
    env.setdefault("MPSQLITE_SITE_SECRET", secrets.token_hex(32))
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + path if path else "")
    return env


def exec_gunicorn(argv: list[str], env: dict[str, str]) -> int:
    """Replace this process with gunicorn; return 2 (with a message) when it is not installed."""
    if importlib.util.find_spec("gunicorn") is None:
        print("example_site: --processes needs gunicorn: pip install gunicorn", file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)
    return 0  # not reached

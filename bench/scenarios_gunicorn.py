"""gunicorn: the example site in several server processes, driven by ``wrk``.

The site runs under ``gunicorn -w 2 -k gthread --threads 8`` (``gunicorn_processes``,
``gunicorn_threads``) from its WSGI entry point ``example_site.wsgi:application``, one side on
the stock ``sqlite://`` URL (``MPSQLITE_SITE_URL``) and one on mpsqlite (``MPSQLITE_SITE_DB``,
``MPSQLITE_SITE_WORKERS`` = each worker count of the mode), each on its own copy of the seeded
database. A third arm is the reference of ``web-wrk``: one CherryPy (cheroot) process with
``web_clients`` threads on plain ``sqlite3``. ``wrk`` drives every arm with the same request
list on ``web_clients`` keep-alive connections, arms interleaved by repetition, twice:

- ordinary pages (``example_site.loadmix.load_mix``): rows ``gunicorn`` (mp gunicorn vs plain
  gunicorn) and ``gunicorn/vs-cherrypy`` (mp gunicorn vs the CherryPy process);
- a write mix, ``write_share`` of the requests a review POSTed as JSON
  (``example_site.loadmix.write_mix``, one INSERT and commit each), the rest ordinary pages:
  rows ``gunicorn-write`` and ``gunicorn-write/vs-cherrypy``.

Servers listen on 127.0.0.1 on free ports; a status >= 400 and a socket error count as
errors. gunicorn's temporary and lock files go to the run's own folder (``TMPDIR``).
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import data, sides
from .runner import Arm, CannotRun, Context, Sample, measure_interleaved, result_rows
from .scenarios_web import ROOT, SiteServer, dataset
from .scenarios_wrk import collect, require_wrk, seconds_of, start, write_paths

_START_TIMEOUT = 90.0


def require_gunicorn() -> None:
    """CannotRun with what to install when gunicorn is missing."""
    if importlib.util.find_spec("gunicorn") is None:
        raise CannotRun("gunicorn is not installed (pip install 'gunicorn>=21', in the dev extra)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_request_lines(books: int, count: int, seed: int, share: float, dest: Path
                        ) -> tuple[Path, float]:
    """``count`` requests for ``wrk_replay.lua``: ``share`` of them review POSTs, the rest GETs
    of ordinary pages; returns the file and the share of POSTs actually drawn."""
    from example_site.loadmix import load_mix, pick, write_mix

    rng = random.Random(seed)
    reads, writes = load_mix(books), write_mix(books)
    lines, posts = [], 0
    for _ in range(count):
        if rng.random() < share:
            path, body = pick(writes, rng)
            text = json.dumps(body)
            if "\n" in text or any(c.isspace() for c in path):
                raise ValueError(f"request wrk cannot send verbatim: {path} {text}")
            lines.append(f"POST {path} {text}")
            posts += 1
        else:
            path = pick(reads, rng)
            if not path.startswith("/") or any(c.isspace() for c in path):
                raise ValueError(f"path wrk cannot send verbatim: {path!r}")
            lines.append(path)
    dest.write_text("\n".join(lines) + "\n")
    return dest, posts / max(1, count)


def _has_control_socket() -> bool:
    from gunicorn.config import Config

    return "control_socket_disable" in Config().settings


class GunicornServer:
    """``gunicorn -k gthread`` serving ``example_site.wsgi:application`` for one side."""

    def __init__(self, side: str, path: Path, workers: int | None, processes: int, threads: int,
                 books: int, folder: Path, log_path: Path) -> None:
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.port = free_port()
        env = dict(os.environ, TMPDIR=str(folder), MPSQLITE_SITE_SECRET=secrets.token_hex(16),
                   MPSQLITE_SITE_SEED_ROWS=str(books), MPSQLITE_SITE_POOL_SIZE=str(threads),
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        for name in ("MPSQLITE_SITE_URL", "MPSQLITE_SITE_DB", "MPSQLITE_SITE_WORKERS"):
            env.pop(name, None)
        if side == sides.PLAIN:
            env["MPSQLITE_SITE_URL"] = sides.sqlalchemy_url(side, path)
        else:
            env["MPSQLITE_SITE_DB"] = str(path)
            if workers:
                env["MPSQLITE_SITE_WORKERS"] = str(workers)
        argv = [sys.executable, "-m", "gunicorn", "-w", str(processes), "-k", "gthread",
                "--threads", str(threads), "-b", f"127.0.0.1:{self.port}",
                "--graceful-timeout", "10", "--worker-tmp-dir", str(folder)]
        if _has_control_socket():
            argv.append("--no-control-socket")
        self.proc = subprocess.Popen(argv + ["example_site.wsgi:application"], cwd=folder,
                                     stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/api/status")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer in {_START_TIMEOUT:.0f} s: "
                           f"{self.log_tail()}")

    def log_tail(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text()[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def run(ctx: Context) -> list[dict[str, Any]]:
    """Ordinary pages, then the write mix, on every arm (CherryPy, gunicorn plain and mp)."""
    import example_site.loadmix as loadmix

    require_gunicorn()
    wrk, m = require_wrk(), ctx.mode
    conns = m.web_clients
    ordinary = write_paths(loadmix.load_mix(m.web_books), m.wrk_paths, data.SEED,
                           ctx.work_dir / "gunicorn_ordinary.paths")
    mixed, post_share = write_request_lines(m.web_books, m.wrk_paths, data.SEED + 2,
                                            m.write_share, ctx.work_dir / "gunicorn_write.paths")
    src = dataset(ctx.data_dir, m.web_books)
    servers: list[Any] = []
    arms: list[tuple[Arm, Any]] = []
    try:
        if sides.PLAIN in ctx.sides:
            path = data.copy_for(src, ctx.work_dir, "gunicorn_cherrypy.db")
            server = SiteServer(sides.sqlalchemy_url(sides.PLAIN, path), conns,
                                ctx.work_dir / "gunicorn_cherrypy.log")
            servers.append(server)
            arms.append((Arm(sides.PLAIN, None, _noop, name="plain cherrypy"), server))
        for side, workers in ctx.arm_specs():
            tag = f"gunicorn_{side}_{workers}"
            folder = ctx.work_dir / tag
            folder.mkdir(exist_ok=True)
            path = data.copy_for(src, folder, "site.db")
            server = GunicornServer(side, path, workers, m.gunicorn_processes,
                                    m.gunicorn_threads, m.web_books, folder,
                                    ctx.work_dir / f"{tag}.log")
            servers.append(server)
            name = "plain gunicorn" if side == sides.PLAIN else f"mp gunicorn w={workers}"
            arms.append((Arm(side, workers, _noop, name=name), server))
        layout = f"gunicorn -w {m.gunicorn_processes} -k gthread --threads {m.gunicorn_threads}"
        rows: list[dict[str, Any]] = []
        for tag, paths, extra in (("gunicorn", ordinary, {}),
                                  ("gunicorn-write", mixed, {"post_share": round(post_share, 4)})):
            timed = [_wrk_arm(arm, server, wrk, paths, m.wrk_threads) for arm, server in arms]
            samples = measure_interleaved(timed, conns, m.web_duration, m.warmup * 2, m.reps,
                                          f"{tag} connections={conns}")
            _check_alive(servers)
            zero = ("plain", "mp") if tag == "gunicorn" else ("mp",)
            common = {"unit": "req/s", "load": "wrk", "books": m.web_books, "server": layout,
                      **extra}
            by_name = {a.name: a for a in timed}
            mp_arms = [a for a in timed if a.side == sides.MP]
            for suffix, baseline in (("", "plain gunicorn"), ("/vs-cherrypy", "plain cherrypy")):
                base = [by_name[baseline]] if baseline in by_name else []
                if not base and suffix:
                    continue  # no plain side: one set of mp-only rows is enough
                rows += result_rows(tag + suffix, conns, base + mp_arms, samples,
                                    zero_errors=zero, baseline=baseline, **common)
        return rows
    finally:
        for server in servers:
            server.close()


def _noop(_i: int) -> Any:
    return lambda: None


def _wrk_arm(arm: Arm, server: Any, wrk: str, paths: Path, wrk_threads: int) -> Arm:
    """``arm`` measured by wrk replaying ``paths`` against ``server``."""

    def run(_make: Any, connections: int, duration: float) -> Sample:
        secs = seconds_of(duration)
        return collect(start(wrk, server.port, paths, connections, wrk_threads, secs), secs)

    return Arm(arm.side, arm.workers, arm.make_op, run=run, name=arm.name)


def _check_alive(servers: list[Any]) -> None:
    for server in servers:
        if server.proc.poll() is not None:
            raise RuntimeError(f"web server died: {server.log_tail()}")

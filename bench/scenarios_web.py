"""Web scenario: the example site served by cheroot, stock ``sqlite://`` vs ``sqlite+mpsqlite://``.

Each side's server runs in its own process (``bench._webserver``) so the load generator's GIL
does not slow the server it measures. The load generator is deliberately simple and the same for
both sides: ``web_clients`` threads, each with one keep-alive ``http.client`` connection,
requesting GET URLs drawn from ``example_site.load_mix(books)`` (``LOAD_MIX`` at that size)
with a fixed seed per thread, for a fixed duration.
A response with status >= 400 or a broken connection counts as an error.
"""

from __future__ import annotations

import http.client
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import data, sides
from .runner import Arm, Context, log, measure_interleaved, result_rows, run_threads

ROOT = Path(__file__).resolve().parent.parent
_STARTUP_TIMEOUT = 60.0


def dataset(data_dir: Path, books: int) -> Path:
    """The example site's database seeded with ``books`` books (example_site.seed), cached."""

    def build(path: Path) -> None:
        from sqlalchemy import create_engine

        from example_site.seed import seed

        engine = create_engine(f"sqlite:///{path}")
        last = [-1]

        def progress(stage: str, done: int, total: int) -> None:
            pct = 100 * done // max(total, 1)
            if pct // 25 != last[0] // 25 or done == total:
                log(f"data: web {stage}: {pct}% ({done:,}/{total:,})")
            last[0] = pct

        try:
            seed(engine, books, progress)
        finally:
            engine.dispose()

    return data.cached(data_dir, f"web_{books}", build)


class SiteServer:
    """One example-site server process for one side."""

    def __init__(self, url: str, threads: int, log_path: Path) -> None:
        self.log_file = open(log_path, "w")
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
            "PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._webserver", url, str(threads)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_file,
            text=True, env=env,
        )
        line = readline_with_timeout(self.proc, _STARTUP_TIMEOUT)
        if not line.startswith("LISTENING "):
            self.close()
            raise RuntimeError(f"web server did not start: {line!r}; log: {self.log_tail()}")
        self.port = int(line.split()[1])

    def log_tail(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text()[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def readline_with_timeout(proc: subprocess.Popen, timeout: float) -> str:
    """One line of ``proc``'s stdout, stripped; "" if none came within ``timeout`` seconds."""
    box: list[str] = [""]
    reader = threading.Thread(target=lambda: box.__setitem__(0, proc.stdout.readline()),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0].strip()


class _Client:
    """Keep-alive HTTP clients for one server; connections are closed after every run."""

    def __init__(self, port: int, pick: Callable[[random.Random], str]) -> None:
        self.port, self.pick = port, pick
        self.conns: list[http.client.HTTPConnection] = []
        self.runs = 0

    def make_op(self, i: int) -> Callable[[], None]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.conns.append(conn)
        rng = random.Random(9000 + 100 * self.runs + i)
        box = [conn]

        def op() -> None:
            path = self.pick(rng)
            try:
                box[0].request("GET", path)
                resp = box[0].getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                box[0].close()
                box[0] = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conns.append(box[0])
                raise
            if resp.status >= 400:
                raise RuntimeError(f"HTTP {resp.status} for GET {path}")

        return op

    def run(self, make_op: Callable[[int], Any], threads: int, duration: float) -> Any:
        self.runs += 1
        try:
            return run_threads(make_op, threads, duration)
        finally:
            for conn in self.conns:
                conn.close()
            self.conns.clear()


def run(ctx: Context) -> list[dict[str, Any]]:
    """The example site under ``web_clients`` keep-alive clients, both sides interleaved."""
    import example_site

    m = ctx.mode
    mix = example_site.load_mix(m.web_books)  # LOAD_MIX, fitted to the seeded size
    src = dataset(ctx.data_dir, m.web_books)
    servers: list[SiteServer] = []
    arms: list[Arm] = []
    try:
        for side, workers in ctx.arm_specs():
            path = data.copy_for(src, ctx.work_dir, f"web_{side}_{workers}.db")
            url = sides.sqlalchemy_url(side, path, workers)
            server = SiteServer(url, m.web_clients, ctx.work_dir / f"web_{side}_{workers}.log")
            servers.append(server)
            client = _Client(server.port, lambda rng: example_site.pick(mix, rng))
            arms.append(Arm(side, workers, client.make_op, run=client.run))
        samples = measure_interleaved(
            arms, m.web_clients, m.web_duration, m.warmup * 2, m.reps,
            f"web clients={m.web_clients}",
        )
        for server in servers:
            if server.proc.poll() is not None:
                raise RuntimeError(f"web server died: {server.log_tail()}")
        return result_rows(
            "web", m.web_clients, arms, samples, unit="req/s",
            server="cheroot in its own process", books=m.web_books,
        )
    finally:
        for server in servers:
            server.close()


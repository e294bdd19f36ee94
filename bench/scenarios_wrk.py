"""wrk-driven web scenarios: the example site under a load generator written in C.

The ``web`` scenario's Python clients share the machine's cores and a GIL of their own; ``wrk``
(Debian package ``wrk``) costs far less per request. Request paths are drawn in Python from
the site's own mixes with a fixed seed, written one per line, and replayed in order by
``bench/wrk_replay.lua``; every side gets the same list. Each side's server is
``bench._webserver`` (cheroot, ``web_clients`` threads) in its own process, and the sides'
runs interleave as everywhere else.

- ``web-wrk``: ordinary pages (``example_site.loadmix.load_mix``) on ``web_clients`` keep-alive
  connections; req/s and wrk's latency percentiles (p50, p99).
- ``web-mixed``: two wrk processes at once against one server, ``heavy_share`` of the
  connections (at least one) replaying heavy pages (``example_site.loadmix.heavy_mix``: CSV
  export, regex search, Python-scored rankings), the rest ordinary pages. Rows: the total
  req/s (``web-mixed``) and each part's req/s and p99 (``web-mixed/ordinary``,
  ``web-mixed/heavy``): whether heavy pages slow everyone else down is the ordinary p99.
  The share is of connections, not requests (a heavy page takes longer); ``heavy_requests``
  says what share of the requests they were.

A status >= 400 and a socket error (connect, read, write, timeout) count as errors.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import data, sides
from .runner import Arm, CannotRun, Context, Sample, measure_interleaved, result_rows
from .scenarios_web import SiteServer, dataset

LUA = Path(__file__).resolve().with_name("wrk_replay.lua")
_TIMEOUT_S = 30  # wrk's per-request timeout: a slow heavy page is slow, not an error
_ERROR_KINDS = ("connect", "read", "write", "timeout")


def require_wrk() -> str:
    """Path of the wrk binary; CannotRun with what to install when it is missing."""
    found = shutil.which("wrk")
    if found is None:
        raise CannotRun("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    return found


def write_paths(mix: list[tuple[int, Any]], count: int, seed: int, dest: Path) -> Path:
    """``count`` paths drawn from ``mix`` with ``seed``, one per line, into ``dest``."""
    from example_site.loadmix import pick

    rng = random.Random(seed)
    paths = [pick(mix, rng) for _ in range(count)]
    bad = [p for p in paths if not p.startswith("/") or any(c.isspace() for c in p)]
    if bad:
        raise ValueError(f"paths wrk cannot send verbatim: {bad[:3]}")
    dest.write_text("\n".join(paths) + "\n")
    return dest


def start(wrk: str, port: int, paths: Path, connections: int, threads: int,
          seconds: int) -> subprocess.Popen:
    """Start one wrk process; :func:`collect` waits for it and reads its result."""
    threads = max(1, min(threads, connections))
    return subprocess.Popen(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={_TIMEOUT_S}s",
         "--latency", "-s", str(LUA), f"http://127.0.0.1:{port}", "--", str(paths),
         str(threads)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def collect(proc: subprocess.Popen, seconds: int) -> Sample:
    """Wait for wrk ``proc`` and turn its ``BENCH_JSON`` line into a Sample."""
    out, err = proc.communicate(timeout=seconds + _TIMEOUT_S + 60)
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (rc={proc.returncode}): {err[-1000:]}{out[-1000:]}")
    return parse(line)


def parse(line: str) -> Sample:
    """A Sample from the Lua script's ``BENCH_JSON {...}`` summary line."""
    r = json.loads(line.split(" ", 1)[1])
    kinds = Counter({f"socket {k} error": r[k] for k in _ERROR_KINDS if r[k]})
    if r["status"]:
        kinds["HTTP status >= 400"] = r["status"]
    ok = r["requests"] - r["status"]
    percentiles = {float(q): us / 1000 for q, us in r["latency_us"].items()} if ok else {}
    return Sample(ok, r["duration_us"] / 1e6, sum(kinds.values()), [], kinds, percentiles)


def seconds_of(duration: float) -> int:
    """wrk takes whole seconds."""
    return max(1, math.ceil(duration))


def _servers(ctx: Context, tag: str) -> list[tuple[str, int | None, SiteServer]]:
    m = ctx.mode
    src = dataset(ctx.data_dir, m.web_books)
    out = []
    try:
        for side, workers in ctx.arm_specs():
            name = f"{tag}_{side}_{workers}"
            path = data.copy_for(src, ctx.work_dir, f"{name}.db")
            url = sides.sqlalchemy_url(side, path, workers)
            out.append((side, workers, SiteServer(url, m.web_clients,
                                                  ctx.work_dir / f"{name}.log")))
    except BaseException:
        for *_, server in out:
            server.close()
        raise
    return out


def _check_alive(servers: list[tuple[str, int | None, SiteServer]]) -> None:
    for *_, server in servers:
        if server.proc.poll() is not None:
            raise RuntimeError(f"web server died: {server.log_tail()}")


def run_ordinary(ctx: Context) -> list[dict[str, Any]]:
    """Ordinary pages from wrk on ``web_clients`` connections, plain and mp interleaved."""
    import example_site.loadmix as loadmix

    wrk, m = require_wrk(), ctx.mode
    paths = write_paths(loadmix.load_mix(m.web_books), m.wrk_paths, data.SEED,
                        ctx.work_dir / "wrk_ordinary.paths")
    servers = _servers(ctx, "wrk")
    try:
        arms = []
        for side, workers, server in servers:
            def run(_make: Any, conns: int, duration: float, port: int = server.port) -> Sample:
                secs = seconds_of(duration)
                return collect(start(wrk, port, paths, conns, m.wrk_threads, secs), secs)

            arms.append(Arm(side, workers, lambda i: (lambda: None), run=run))
        samples = measure_interleaved(arms, m.web_clients, m.web_duration, m.warmup * 2,
                                      m.reps, f"web-wrk connections={m.web_clients}")
        _check_alive(servers)
    finally:
        for *_, server in servers:
            server.close()
    return result_rows("web-wrk", m.web_clients, arms, samples, unit="req/s",
                       load="wrk", books=m.web_books, paths=m.wrk_paths)


def run_mixed(ctx: Context, heavy_mix: Callable[[int], list[tuple[int, Any]]] | None = None
              ) -> list[dict[str, Any]]:
    """Ordinary and heavy pages at once (two wrk processes), plain and mp interleaved."""
    import example_site.loadmix as loadmix

    wrk, m = require_wrk(), ctx.mode
    heavy_mix = heavy_mix or getattr(loadmix, "heavy_mix", None)
    if heavy_mix is None:
        raise CannotRun("example_site.loadmix has no heavy_mix(books) (the heavy pages)")
    heavy_conns = max(1, round(m.web_clients * m.heavy_share))
    ordinary_conns = max(1, m.web_clients - heavy_conns)
    ordinary = write_paths(loadmix.load_mix(m.web_books), m.wrk_paths, data.SEED,
                           ctx.work_dir / "mixed_ordinary.paths")
    heavy = write_paths(heavy_mix(m.web_books), max(100, m.wrk_paths // 10), data.SEED + 1,
                        ctx.work_dir / "mixed_heavy.paths")
    servers = _servers(ctx, "mixed")
    try:
        arms = []
        for side, workers, server in servers:
            def run(_make: Any, _conns: int, duration: float, port: int = server.port) -> Sample:
                secs = seconds_of(duration)
                procs = {"ordinary": start(wrk, port, ordinary, ordinary_conns, m.wrk_threads,
                                           secs),
                         "heavy": start(wrk, port, heavy, heavy_conns, 1, secs)}
                parts = {name: collect(proc, secs) for name, proc in procs.items()}
                return Sample(sum(p.ops for p in parts.values()),
                              max(p.elapsed for p in parts.values()),
                              sum(p.errors for p in parts.values()), [],
                              sum((p.error_kinds for p in parts.values()), Counter()), {},
                              parts)

            arms.append(Arm(side, workers, lambda i: (lambda: None), run=run))
        samples = measure_interleaved(
            arms, m.web_clients, m.web_duration, m.warmup * 2, m.reps,
            f"web-mixed connections={ordinary_conns}+{heavy_conns} heavy")
        _check_alive(servers)
    finally:
        for *_, server in servers:
            server.close()
    heavy_requests = {
        label: round(sum(s.parts["heavy"].ops for s in got) / max(1, sum(s.ops for s in got)), 4)
        for label, got in samples.items()
    }
    common = {"unit": "req/s", "load": "wrk", "books": m.web_books,
              "connections": {"ordinary": ordinary_conns, "heavy": heavy_conns}}
    rows = result_rows("web-mixed", m.web_clients, arms, samples, heavy_requests=heavy_requests,
                       **common)
    for part, conns in (("ordinary", ordinary_conns), ("heavy", heavy_conns)):
        part_samples = {label: [s.parts[part] for s in got] for label, got in samples.items()}
        rows += result_rows(f"web-mixed/{part}", conns, arms, part_samples, **common)
    return rows

"""The command line: options, the seeding progress display and ``--url`` on stock sqlite."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _site_support import ROOT, count_rows, run_site

from example_site import load_mix, pick, write_mix
from example_site.__main__ import Progress, build_parser
from example_site.seed import DEFAULT_BOOKS, counts_for


def test_defaults_and_options() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.seed_rows, args.url) == ("127.0.0.1", 8080,
                                                                DEFAULT_BOOKS, None)
    args = build_parser().parse_args(["--db", "x.db", "--workers", "3", "--port", "9001",
                                      "--host", "0.0.0.0", "--seed-rows", "500"])
    assert (args.db, args.workers, args.port, args.host, args.seed_rows) == (
        "x.db", 3, 9001, "0.0.0.0", 500)


def test_progress_prints_one_line_per_finished_stage_off_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out)
    for done in (0, 1000, 2000):
        progress("books", done, 2000)
    progress("reviews", 6000, 6000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "books" in lines[0] and "100%" in lines[0] and "2,000/2,000" in lines[0]
    assert "reviews" in lines[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as res:
        return json.load(res)


def test_url_option_runs_the_site_on_stock_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "stock.db"
    with run_site(tmp_path, "--url", f"sqlite:///{db}", "--seed-rows", "40") as (base, log):
        status = _get_json(base + "/api/status")
        assert status["dialect"] == "sqlite+pysqlite" and status["uses_mpsqlite"] is False
        with urllib.request.urlopen(base + "/status", timeout=30) as res:
            assert "Not using mpsqlite" in res.read().decode()
        assert _get_json(base + "/api/books")["total"] == 40
    assert "seeded" in log.read_text()
    assert count_rows(db, "review") == counts_for(40)["reviews"]
    # a second start finds the data and does not seed again
    with run_site(tmp_path, "--url", f"sqlite:///{db}", "--seed-rows", "40") as (base, log):
        assert _get_json(base + "/api/books")["total"] == 40
    assert "seeding" not in log.read_text()


def test_concurrent_readers_and_writers_on_the_real_server(tmp_path: Path) -> None:
    """Threads mixing the benchmark's GETs and review POSTs: no errors, every write lands."""
    db = tmp_path / "busy.db"
    scale = 200
    rng = random.Random(7)
    reads = [pick(load_mix(scale), rng) for _ in range(60)]
    writes = [target(rng) for _ in range(24) for _, target in write_mix(scale)]
    with run_site(tmp_path, "--db", str(db), "--workers", "2", "--threads", "8",
                  "--seed-rows", str(scale)) as (base, _log):
        before = count_rows(db, "review")

        def get(path: str) -> int:
            with urllib.request.urlopen(base + path, timeout=120) as res:
                res.read()
                return res.status

        def post(item: tuple[str, dict]) -> int:
            req = urllib.request.Request(base + item[0], data=json.dumps(item[1]).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as res:
                return res.status

        with ThreadPoolExecutor(max_workers=8) as pool:
            read_status = list(pool.map(get, reads))
            write_status = list(pool.map(post, writes))
        status = _get_json(base + "/api/status")
    assert read_status == [200] * len(reads)
    assert write_status == [201] * len(writes)
    assert count_rows(db, "review") == before + len(writes)
    assert status["requests"]["errors"] == 0
    (pool_info,) = [p for p in status["pools"] if p["database"] == str(db)]
    ran = pool_info["local_statements"] + pool_info["offloaded_statements"]
    assert pool_info["errors"] == 0 and ran > len(reads)
    # every review POST was a write transaction let through the writer gate and committed
    assert pool_info["writer_grants"] >= len(writes)
    assert (pool_info["writer_waiting"], pool_info["writer_busy"]) == (0, False)
    assert pool_info["commits"] >= len(writes) and pool_info["fsyncs"] >= 1


def test_a_taken_port_is_one_clear_line_and_a_failure(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "example_site", "--port", str(port), "--db", str(db)],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"example_site: port {port} on 127.0.0.1 is already in use; stop what is using it or "
        f"choose another with --port (e.g. --port {port + 1})"]
    assert not db.exists()  # it said so before seeding anything


def test_installed_package_imports_from_any_directory(tmp_path: Path) -> None:
    """``pip install -e .`` installs example_site with its templates and static files."""
    script = (
        "import example_site, sys\n"
        "from example_site import make_app\n"
        "from example_site.db import make_engine\n"
        "from example_site.seed import seed\n"
        "from webtest import TestApp\n"
        "eng = make_engine('sqlite:///shop.db', pool_size=1)\n"
        "seed(eng, 20)\n"
        "app = TestApp(make_app(eng))\n"
        "assert 'Welcome to the Bookshop' in app.get('/').text\n"
        "assert app.get('/static/site.css').content_type == 'text/css'\n"
        "print(example_site.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.splitlines()[-1]) == ROOT / "example_site" / "__init__.py"

"""``/metrics`` and the live parts of ``/status``: real requests, a real server under load and
headless Chromium (the screenshot goes to ``artifacts/status/status_under_load.png``)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _site_support import ROOT, SCALE, WORKERS, _wait_until_up, free_port
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from test_site_browser import browser  # noqa: F401 - the headless Chromium fixture
from webtest import TestApp

from example_site import make_app
from example_site.db import make_engine
from example_site.loadmix import load_mix, pick, write_mix

ARTIFACTS = ROOT / "artifacts" / "status"  # not example_site/: its browser test empties it
#: A read mpsqlite judges heavy (>= 1000 rows fetched): its second run goes to a worker.
HEAVY = text("with recursive r(i) as (select 1 union all select i + 1 from r where i < 5000) "
             "select i from r")


def samples(body: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body) for s in f.samples}


def series(got: dict, name: str, path: Path, **labels: str) -> float:
    return got[(name, tuple(sorted({"database": str(path), **labels}.items())))]


def _pool(data: dict, path: Path) -> dict:
    (pool,) = [p for p in data["pools"] if p["database"] == str(path)]
    return pool


@pytest.mark.parametrize("engine", ["mpsqlite"], indirect=True)
def test_metrics_endpoint_counts_what_the_site_did(app: TestApp, engine, db_path: Path) -> None:
    for n in range(3):
        res = app.post_json("/api/books/1/reviews", {"reviewer": f"m{n}", "rating": 4,
                                                     "body": "Counted by /metrics."})
        assert res.status_int == 201
    for _ in range(2):
        with engine.connect() as conn:
            assert len(conn.execute(HEAVY).all()) == 5000
    res = app.get("/metrics")
    assert res.content_type == "text/plain"
    assert "version=" in res.headers["Content-Type"]
    got = samples(res.text)
    status = _pool(app.get("/api/status").json, db_path)
    assert series(got, "mpsqlite_commits_total", db_path) == status["commits"] >= 3
    assert 1 <= series(got, "mpsqlite_fsyncs_total", db_path) <= status["commits"]
    assert series(got, "mpsqlite_statements_total", db_path, where="workers", kind="read") == 1
    caller_reads = series(got, "mpsqlite_statements_total", db_path, where="caller", kind="read")
    assert 0 < caller_reads <= status["totals"]["caller_reads"]  # /api/status read more since
    assert series(got, "mpsqlite_statements_total", db_path, where="caller", kind="write") >= 3
    assert series(got, "mpsqlite_workers_alive", db_path) == len(status["workers"]) == 1
    assert series(got, "mpsqlite_workers_max", db_path) == WORKERS
    assert series(got, "mpsqlite_writer_wait_seconds_count", db_path) == status["writer_grants"]
    assert series(got, "mpsqlite_writer_queue_length", db_path) == 0


@pytest.mark.parametrize("engine", ["mpsqlite"], indirect=True)
def test_status_json_has_totals_rates_and_the_caller(app: TestApp, engine, db_path: Path) -> None:
    assert app.get("/").status_int == 200  # the engine's first connection opens the file
    first = app.get("/api/status").json
    for page in range(1, 6):
        assert app.get(f"/books?page={page}").status_int == 200
    time.sleep(0.6)  # rates need two samples at least half a second apart
    data = app.get("/api/status").json
    pool = _pool(data, db_path)
    before, after = _pool(first, db_path)["totals"], pool["totals"]
    assert after["caller_reads"] - before["caller_reads"] >= 5  # each page reads at least once
    assert after["worker_reads"] == before["worker_reads"] == 0
    rates = pool["rates"]
    assert rates["seconds"] >= 0.5
    assert rates["caller_reads"] > 0 and rates["worker_reads"] == 0
    assert rates["workers_percent"] == 0.0
    assert rates["statements"] == pytest.approx(
        rates["caller_reads"] + rates["caller_writes"] + rates["worker_reads"], abs=0.2)
    caller = pool["caller"]
    assert caller["state"] == "serving" and caller["per_second"] > 0
    assert caller["statements"] == after["caller_reads"] + after["caller_writes"]
    assert data["time"] > first["time"]
    sa = data["sqlalchemy_pool"]
    assert {"class", "size", "checked_out", "checked_in", "overflow", "open"} <= set(sa)
    assert isinstance(sa["size"], int) and isinstance(sa["checked_in"], int)

    html = app.get("/status").text
    for key in ("statements", "queue", "wait", "commits", "batch", "workers"):
        assert f'<canvas data-chart="{key}"' in html
    assert f'id="charts" data-database="{db_path}"' in html
    assert re.search(r'data-field="caller_state">serving<', html)
    assert re.search(r'data-field="rate_caller_reads">[0-9.]+<', html)
    assert re.search(r'data-field="caller_writes">\d+<', html)
    assert '<a href="/metrics">' in html


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_metrics_and_status_without_mpsqlite(app: TestApp) -> None:
    assert app.get("/metrics").status_int == 200  # serves whatever this process has
    html = app.get("/status").text
    assert 'id="charts"' not in html and "Not using mpsqlite" in html


def test_metrics_without_prometheus_client_says_what_to_install(tmp_path: Path) -> None:
    code = f"""
import sys
sys.modules["prometheus_client"] = None  # as if it were not installed
sys.path.insert(0, {str(ROOT)!r})
import cherrypy
from webtest import TestApp
from example_site import make_app
from example_site.db import make_engine
cherrypy.config.update({{"log.screen": False, "checker.on": False}})
app = TestApp(make_app(make_engine("sqlite+mpsqlite:///{tmp_path / 'x.db'}")))
res = app.get("/metrics", status=501)
print(res.content_type, res.text)
assert app.get("/status").status_int == 200
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={k: v for k, v in os.environ.items()
                                           if k != "PROMETHEUS_MULTIPROC_DIR"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("text/plain prometheus_client is not installed")
    assert "pip install mpsqlite[metrics]" in out.stdout


@contextmanager
def _serve(app) -> Iterator[str]:
    from cheroot import wsgi

    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=8)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.bind_addr[1]}"
    finally:
        server.stop()
        thread.join(30)


def _load(base: str, engine, stop: threading.Event, errors: list) -> list[threading.Thread]:
    """Readers and writers over HTTP, and a heavy read straight on the engine (to a worker)."""
    gets, posts = load_mix(SCALE), write_mix(SCALE)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            try:
                urllib.request.urlopen(base + pick(gets, rng), timeout=60).read()
            except Exception as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            path, body = pick(posts, rng)
            req = urllib.request.Request(base + path, json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=60).read()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    def heavy() -> None:
        while not stop.wait(0.3):
            with engine.connect() as conn:
                conn.execute(HEAVY).all()

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(3)]
    threads += [threading.Thread(target=writer, args=(100 + i,), daemon=True) for i in range(3)]
    threads.append(threading.Thread(target=heavy, daemon=True))
    for t in threads:
        t.start()
    return threads


def test_status_page_under_load_in_chromium(db_path: Path, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    engine = make_engine(f"sqlite+mpsqlite:///{db_path}?workers={WORKERS}", pool_size=8)
    stop, errors = threading.Event(), []
    try:
        with _serve(make_app(engine, secret=b"t")) as base:
            threads = _load(base, engine, stop, errors)
            try:
                browser.get(base + "/status")

                def points(key: str) -> int:
                    canvas = browser.find_element(By.CSS_SELECTOR, f'canvas[data-chart="{key}"]')
                    return int(canvas.get_attribute("data-points") or 0)

                WebDriverWait(browser, 60).until(lambda d: points("statements") >= 3 * 10)
                def fields() -> dict[str, str]:  # read at once: #pools is swapped every second
                    return browser.execute_script(
                        "const out = {}; for (const el of document.querySelectorAll("
                        "'.pool [data-field]')) out[el.dataset.field] = el.textContent.trim();"
                        " return out;")

                WebDriverWait(browser, 30).until(
                    lambda d: fields().get("caller_state") == "serving")
                shown = fields()
                legend = browser.find_element(By.CSS_SELECTOR, '[data-legend="statements"]').text
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                height = browser.execute_script("return document.body.scrollHeight")
                browser.set_window_size(1280, min(max(height, 800), 3000))
                browser.save_screenshot(str(ARTIFACTS / "status_under_load.png"))
                with urllib.request.urlopen(base + "/metrics", timeout=60) as res:
                    got = samples(res.read().decode())
            finally:
                stop.set()
                for t in threads:
                    t.join(60)
    finally:
        engine.dispose()
        import mpsqlite

        mpsqlite.shutdown()
    assert errors == []
    assert float(shown["caller_per_second"].replace(",", "")) > 0
    assert float(shown["rate_caller_reads"].replace(",", "")) > 0
    assert int(shown["local_statements"].replace(",", "")) > 0
    assert re.search(r"caller reads [0-9.,]+", legend), legend
    assert (ARTIFACTS / "status_under_load.png").stat().st_size > 20_000
    assert series(got, "mpsqlite_statements_total", db_path, where="workers", kind="read") >= 1
    assert series(got, "mpsqlite_statements_total", db_path, where="caller", kind="write") >= 1
    assert series(got, "mpsqlite_commits_total", db_path) >= 1


#: A stand-in WSGI module for gunicorn: the site on mpsqlite, one engine per process.
_GUNICORN_APP = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from example_site import make_app
from example_site.db import make_engine
application = make_app(make_engine("sqlite+mpsqlite:///" + os.environ["SITE_DB"] + "?workers=1"))
"""
_GUNICORN_CONF = """
def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
"""


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as res:
        return res.read()


def test_metrics_under_gunicorn_two_processes(tmp_path: Path, db_path: Path) -> None:
    (tmp_path / "siteapp.py").write_text(_GUNICORN_APP)
    (tmp_path / "gconf.py").write_text(_GUNICORN_CONF)
    files = tmp_path / "prom"
    files.mkdir()
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = dict(os.environ, SITE_DB=str(db_path), PROMETHEUS_MULTIPROC_DIR=str(files))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
             "-c", str(tmp_path / "gconf.py"), "--chdir", str(tmp_path), "siteapp:application"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(proc, base + "/api/status", log, 60)
        per_pid: dict[int, dict] = {}
        deadline = time.monotonic() + 60
        while len(per_pid) < 2 and time.monotonic() < deadline:  # until both answered
            for page in range(1, 4):
                _get(f"{base}/books?page={page}")
            data = json.loads(_get(base + "/api/status"))
            if any(p["database"] == str(db_path) for p in data["pools"]):
                # (a process that has not opened the database yet has no pool to show)
                per_pid[data["server"]["pid"]] = _pool(data, db_path)["totals"]
        assert len(per_pid) == 2, "one gunicorn process served every request"
        for pid in list(per_pid):  # the latest totals of each (no more reads meanwhile)
            while True:
                data = json.loads(_get(base + "/api/status"))
                if data["server"]["pid"] == pid:
                    per_pid[pid] = _pool(data, db_path)["totals"]
                    break
        expected = sum(t["caller_reads"] for t in per_pid.values())
        got: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the other process adds its counts every second
            got = samples(_get(base + "/metrics").decode())
            if series(got, "mpsqlite_statements_total", db_path, where="caller",
                      kind="read") == expected:
                break
            time.sleep(0.2)
        assert series(got, "mpsqlite_statements_total", db_path, where="caller",
                      kind="read") == expected
        assert series(got, "mpsqlite_workers_max", db_path) == 2  # livesum: 1 + 1
        pids = {int(f.stem.rsplit("_", 1)[1]) for f in files.iterdir()}
        assert pids == set(per_pid)
    finally:
        proc.terminate()
        proc.wait(30)

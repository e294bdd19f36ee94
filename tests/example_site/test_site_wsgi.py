"""The WSGI entry point under real gunicorn, and ``python -m example_site --processes N``."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import stat
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _site_support import SCALE, _wait_until_up, count_rows, csrf_from, free_port, run_site

from example_site.wsgi import create_application

#: Books seeded by gunicorn's first worker: long enough (~0.5 s) for the second worker to
#: start meanwhile, so that without the seeding lock both would seed.
RACE_SCALE = 2500


def _children(pid: int) -> set[int]:
    """Pids of the live processes whose parent is ``pid`` (from /proc)."""
    kids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.add(int(entry.name))
    return kids


def _get(opener: urllib.request.OpenerDirector, url: str) -> tuple[int, str]:
    with opener.open(url, timeout=60) as res:
        return res.status, res.read().decode()


def _post_review_forms(base: str, reviewer: str, times: int) -> list[int]:
    """Get and post the review form ``times``, each from a new browser (cookies, connections),
    several at once so that the server's processes all take part."""

    def one(i: int) -> int:
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        _, page = _get(opener, base + "/books/5")
        form = urllib.parse.urlencode({"csrf_token": csrf_from(page), "reviewer": reviewer,
                                       "rating": str(1 + i % 5), "body": f"Review {i}."})
        try:
            with opener.open(base + "/books/5/reviews", data=form.encode(), timeout=60) as res:
                res.read()
                assert res.url.endswith("/books/5#reviews")  # followed the 303
                return res.status
        except urllib.error.HTTPError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(times)))


def _server_pids(base: str, tries: int = 12) -> set[int]:
    pids = set()
    for _ in range(tries):
        with urllib.request.urlopen(base + "/api/status", timeout=60) as res:
            pids.add(json.load(res)["server"]["pid"])
    return pids


def test_gunicorn_serves_the_site_and_seeds_once(tmp_path: Path) -> None:
    db = tmp_path / "gunicorn.db"  # missing: the first worker creates and seeds it
    port = free_port()
    env = dict(os.environ, MPSQLITE_SITE_DB=str(db), MPSQLITE_SITE_SEED_ROWS=str(RACE_SCALE),
               MPSQLITE_SITE_WORKERS="1", MPSQLITE_SITE_POOL_SIZE="4")
    env.pop("MPSQLITE_SITE_SECRET", None)
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "4",
             "-b", f"127.0.0.1:{port}", "example_site.wsgi:application"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(proc, base + "/api/status", log, 120)
        opener = urllib.request.build_opener()
        for path in ("/", "/books", "/books/1", "/rankings", "/search?q=exile"):
            assert _get(opener, base + path)[0] == 200, path
        with urllib.request.urlopen(base + "/api/books", timeout=60) as res:
            assert json.load(res)["total"] == RACE_SCALE  # seeded once, by one of the two
        before = count_rows(db, "review")
        # forms made by one process are accepted by the other: they share the CSRF secret
        assert _post_review_forms(base, "gunicorn-form", 24) == [200] * 24
        assert count_rows(db, "review", "reviewer = 'gunicorn-form'") == 24
        assert count_rows(db, "review") == before + 24
        workers = _children(proc.pid)
        workers -= {w for w in workers if b"gunicorn" not in Path(
            f"/proc/{w}/cmdline").read_bytes()}  # mpsqlite's workers are grandchildren
        assert len(workers) == 2
        assert _server_pids(base) <= workers
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    text = log.read_text()
    assert "Traceback" not in text and "Worker failed to boot" not in text, text
    assert count_rows(db, "book") == RACE_SCALE
    secret = Path(f"{db}.secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_bytes()) == 64


def test_processes_option_runs_n_gunicorn_processes(tmp_path: Path) -> None:
    db = tmp_path / "procs.db"
    with run_site(tmp_path, "--db", str(db), "--processes", "2", "--workers", "1",
                  "--threads", "4", "--seed-rows", str(SCALE)) as (base, log):
        text = log.read_text()
        master = int(re.search(r"Listening at: http://127\.0\.0\.1:\d+ \((\d+)\)", text)[1])
        booted = {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", text)}
        assert len(booted) == 2 and booted <= _children(master)
        assert _server_pids(base) <= booted
        assert _post_review_forms(base, "procs-form", 4) == [200] * 4
        req = urllib.request.Request(
            base + "/api/books/7/reviews", headers={"Content-Type": "application/json"},
            data=json.dumps({"reviewer": "procs-api", "rating": 4, "body": "JSON."}).encode())
        with urllib.request.urlopen(req, timeout=60) as res:
            assert res.status == 201
    assert "seeding books" in text and "with 2 gunicorn processes" in text
    assert count_rows(db, "review", "reviewer IN ('procs-form', 'procs-api')") == 5
    assert count_rows(db, "book") == SCALE


def test_create_application_reads_the_environment(tmp_path: Path) -> None:
    from webtest import TestApp

    db = tmp_path / "env.db"
    env = {"MPSQLITE_SITE_DB": str(db), "MPSQLITE_SITE_SEED_ROWS": "30",
           "MPSQLITE_SITE_WORKERS": "1", "MPSQLITE_SITE_POOL_SIZE": "2",
           "MPSQLITE_SITE_SECRET": "shared"}
    app = create_application(env)
    try:
        assert app.site.secret == b"shared"
        assert app.site.engine.url.get_driver_name() == "mpsqlite"
        assert TestApp(app).get("/api/books").json["total"] == 30
        assert not Path(f"{db}.secret").exists()  # a given secret is not written down
    finally:
        app.site.engine.dispose()
    with pytest.raises(ValueError, match="MPSQLITE_SITE_WORKERS='two' is not a whole number"):
        create_application(dict(env, MPSQLITE_SITE_WORKERS="two"))

"""Helpers shared by the example-site tests: read the database file behind the app's back."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Books in the test data set (authors = 37, reviews = 900, tags = 40).
SCALE = 300
#: mpsqlite worker processes per test pool (more than one, cheap on 2 cores).
WORKERS = 2

def fetch_all(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """All rows read straight from the file with stdlib sqlite3 (not the engine).

    ``path`` may instead be conftest's PostgresDb, for the tests that also run on PostgreSQL."""
    if not isinstance(path, (str, os.PathLike)):
        return path.rows(sql, params)
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def count_rows(path: Path, table: str, where: str = "", params: tuple = ()) -> int:
    """Rows of ``table`` read straight from the file with stdlib sqlite3 (not the engine)."""
    sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
    return fetch_all(path, sql, params)[0][0]


def fetch_one(path: Path, sql: str, params: tuple = ()) -> tuple | None:
    """One row read straight from the file with stdlib sqlite3."""
    rows = fetch_all(path, sql, params)
    return rows[0] if rows else None


def csrf_from(html: str) -> str:
    """The CSRF token embedded in a rendered form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as res:
                if res.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"server did not come up in {timeout} s:\n{log.read_text()}")


@contextmanager
def run_site(tmp_path: Path, *args: str, timeout: float = 120) -> Iterator[tuple[str, Path]]:
    """Run ``python -m example_site *args`` on a free port; yield (base URL, log file)."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "example_site", "--port", str(port), *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(proc, base + "/api/status", log, timeout)
        yield base, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

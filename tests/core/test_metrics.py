"""mpsqlite.metrics: Prometheus counters read from real databases, workers and processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

import mpsqlite
import mpsqlite.metrics as metrics
from tests.core._heavy import BIG, fill_big, mark_heavy, run_remote
from tests.core._procs import in_thread, wait_fully_exited, worker_pids

BIG_SQL = "select x, s from big"


def scrape(registry: CollectorRegistry) -> dict[tuple, float]:
    """Every sample of the registry's text exposition, by (name, sorted labels)."""
    body = prometheus_client.generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def sample(samples: dict[tuple, float], name: str, path: Path, **labels: str) -> float:
    return samples[(name, tuple(sorted({"database": str(path), **labels}.items())))]


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    metrics.register(reg)
    return reg


def test_statements_commits_and_workers_as_scraped(registry, db_path):
    conn = mpsqlite.connect(str(db_path), workers=2)
    try:
        fill_big(conn)  # create (commits itself) + executemany + commit
        for i in range(5):
            conn.execute("insert into big values (?, 'n')", (BIG + i,))
            conn.commit()
        mark_heavy(conn, BIG_SQL)
        assert len(run_remote(conn, BIG_SQL)) == BIG + 5
        status = conn.pool_status()
        got = scrape(registry)
    finally:
        conn.close()
    caller_reads = sample(got, "mpsqlite_statements_total", db_path, where="caller", kind="read")
    assert caller_reads == status["local_statements"] >= 1
    assert sample(got, "mpsqlite_statements_total", db_path, where="caller", kind="write") == 7
    assert sample(got, "mpsqlite_statements_total", db_path, where="workers", kind="read") == 1
    assert sample(got, "mpsqlite_commits_total", db_path) == 7 == status["commits"]
    fsyncs = sample(got, "mpsqlite_fsyncs_total", db_path)
    assert fsyncs == status["fsyncs"] and 1 <= fsyncs <= 7
    assert sample(got, "mpsqlite_workers_alive", db_path) == len(status["workers"]) == 1
    assert sample(got, "mpsqlite_workers_max", db_path) == 2
    assert sample(got, "mpsqlite_workers_busy", db_path) == 0
    assert sample(got, "mpsqlite_worker_restarts_total", db_path) == 0
    assert sample(got, "mpsqlite_writer_wait_seconds_count", db_path) == status["writer_grants"]
    assert sample(got, "mpsqlite_writer_queue_length", db_path) == 0
    # the same collector is not registered twice
    assert metrics.register(registry) is metrics.register(registry)


def _write_file(path: Path, inserts: int) -> None:
    """Open a file, make a table and ``inserts`` rows, close: 1 + inserts writes, 2 commits."""
    # not linked to other processes' writer queue either: nothing keeps it after close
    conn = mpsqlite.connect(str(path), coordinate=False)
    conn.execute("create table if not exists t(x)")
    for j in range(inserts):
        conn.execute("insert into t values (?)", (j,))
    conn.commit()
    conn.close()


def test_counters_outlive_the_database_being_dropped(registry, db_path):
    for rows in (3, 4):
        _write_file(db_path, rows)
        # no workers ever started: the database is forgotten at its last close
        assert str(db_path) not in {p["database"] for p in mpsqlite.pool_status()}
        got = scrape(registry)
        writes = sample(got, "mpsqlite_statements_total", db_path, where="caller", kind="write")
        assert writes == (4 if rows == 3 else 9)  # create + inserts, added up across opens
        # the create (DDL commits itself) and the commit: two durable commits per open
        assert sample(got, "mpsqlite_commits_total", db_path) == (2 if rows == 3 else 4)
    snap = metrics.snapshot()[str(db_path)]
    assert (snap["caller_writes"], snap["commits"], snap["workers_alive"]) == (9, 4, 0)


def test_worker_restarts_count_across_a_pool_stopped_and_started_again(registry, db_path):
    conn = mpsqlite.connect(str(db_path), workers=1)
    try:
        fill_big(conn)
        mark_heavy(conn, BIG_SQL)
        run_remote(conn, BIG_SQL)
        (victim,) = worker_pids(conn)
        os.kill(victim, signal.SIGKILL)
        wait_fully_exited(victim)
        run_remote(conn, BIG_SQL)  # on a replacement
        assert conn.pool_status()["restarts"] == 1
        assert sample(scrape(registry), "mpsqlite_worker_restarts_total", db_path) == 1
        mpsqlite.shutdown()  # the pool stops; the connection goes on
        assert sample(scrape(registry), "mpsqlite_workers_alive", db_path) == 0
        run_remote(conn, BIG_SQL)  # a new pool, which has restarted nothing
        assert conn.pool_status()["restarts"] == 0
        got = scrape(registry)
    finally:
        conn.close()
    assert sample(got, "mpsqlite_worker_restarts_total", db_path) == 1
    assert sample(got, "mpsqlite_workers_alive", db_path) == 1
    assert sample(got, "mpsqlite_statements_total", db_path, where="workers", kind="read") == 3


def _wait_for(predicate, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        time.sleep(0.01)


def test_writer_queue_wait_histogram_and_timeouts(registry, db_path):
    holder = mpsqlite.connect(str(db_path))
    waiter = mpsqlite.connect(str(db_path), timeout=30, check_same_thread=False)
    quick = mpsqlite.connect(str(db_path), timeout=0.1)
    try:
        holder.execute("create table t(x)")
        holder.commit()
        holder.execute("insert into t values (1)")  # holds the writer gate
        thread, done, errors = in_thread(lambda: (waiter.execute("insert into t values (2)"),
                                                  waiter.commit()))
        _wait_for(lambda: metrics.snapshot()[str(db_path)]["writer_queue"] == 1,
                  "the second writer to queue")
        got = scrape(registry)
        assert sample(got, "mpsqlite_writer_queue_length", db_path) == 1
        assert sample(got, "mpsqlite_writer_busy", db_path) == 1
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            quick.execute("insert into t values (3)")
        holder.commit()
        thread.join(20)
        assert done.is_set() and errors == []
        got = scrape(registry)
    finally:
        for c in (holder, waiter, quick):
            c.close()
    assert sample(got, "mpsqlite_writer_timeouts_total", db_path) == 1
    assert sample(got, "mpsqlite_writer_queue_length", db_path) == 0
    grants = sample(got, "mpsqlite_writer_wait_seconds_count", db_path)
    assert grants == 3  # create, the holder's insert, the waiter's insert
    assert sample(got, "mpsqlite_writer_wait_seconds_bucket", db_path, le="+Inf") == grants
    assert sample(got, "mpsqlite_writer_wait_seconds_sum", db_path) > 0
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in got.items()
                     if k[0] == "mpsqlite_writer_wait_seconds_bucket"
                     and dict(k[1])["database"] == str(db_path))
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[0] >= 2 and counts[-1] - counts[0] <= 1  # only the waiter waited
    assert sum(metrics.snapshot()[str(db_path)]["writer_waits"]) == 1


def test_import_mpsqlite_needs_no_prometheus_client(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["prometheus_client"] = None  # as if it were not installed
        import mpsqlite, mpsqlite.metrics
        conn = mpsqlite.connect({str(tmp_path / 'x.db')!r})
        conn.execute("create table t(x)"); conn.commit()
        print(mpsqlite.metrics.snapshot()[{str(tmp_path / 'x.db')!r}]["caller_writes"])
        try:
            mpsqlite.metrics.register()
        except ImportError as exc:
            print("ImportError", exc.name)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={k: v for k, v in os.environ.items()
                                          if k != metrics.MULTIPROC_ENV})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["1", "ImportError prometheus_client"]


#: One process of an application under gunicorn: writes, reads, offloads one read, then
#: scrapes (every process's files merged) whenever asked on stdin.
_CHILD = textwrap.dedent("""
    import sys
    import mpsqlite, mpsqlite.metrics
    path, writes = sys.argv[1], int(sys.argv[2])
    mpsqlite.metrics.register(interval=0.1)
    conn = mpsqlite.connect(path, workers=1)
    for i in range(writes):
        conn.execute("insert into t values (?, 'c')", (-1 - i - 1000 * writes,))
        conn.commit()
    for _ in range(2):  # the second run goes to a worker
        conn.execute("select x, s from big").fetchall()
    print("ready", flush=True)
    for line in sys.stdin:
        body, _ = mpsqlite.metrics.exposition()
        with open(line.strip(), "wb") as f:
            f.write(body)
        print("scraped", flush=True)
""")


def test_multiprocess_two_processes_one_scrape(tmp_path, db_path):
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute("pragma journal_mode=wal")
        conn.execute("create table big(x integer primary key, s text)")
        conn.executemany("insert into big values (?, 's')", ((i,) for i in range(BIG)))
        conn.execute("create table t(x integer primary key, s text)")
        conn.commit()
    files = tmp_path / "prom"
    files.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(files))
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(db_path), str(n)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for n in (7, 11)]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n"
        scraper, other = procs

        def merged() -> dict[tuple, float]:
            out = tmp_path / "scrape.txt"
            scraper.stdin.write(f"{out}\n")
            scraper.stdin.flush()
            assert scraper.stdout.readline() == "scraped\n"
            return {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for f in text_string_to_metric_families(out.read_text()) for s in f.samples}

        def settled(got: dict) -> tuple | None:
            try:
                return (sample(got, "mpsqlite_statements_total", db_path, where="caller",
                               kind="write"),
                        sample(got, "mpsqlite_statements_total", db_path, where="workers",
                               kind="read"),
                        sample(got, "mpsqlite_commits_total", db_path),
                        sample(got, "mpsqlite_statements_total", db_path, where="caller",
                               kind="read"),
                        sample(got, "mpsqlite_workers_alive", db_path),  # livesum of both
                        sample(got, "mpsqlite_writer_wait_seconds_count", db_path))
            except KeyError:
                return None

        # The other process's thread adds its counts one metric at a time, so a scrape
        # can fall between two of them: wait until every figure below is in.
        got = merged()
        deadline = time.monotonic() + 30
        while settled(got) != (18, 2, 18, 2, 2, 18) and time.monotonic() < deadline:
            time.sleep(0.05)
            got = merged()
        assert sample(got, "mpsqlite_statements_total", db_path, where="caller",
                      kind="write") == 18
        assert sample(got, "mpsqlite_commits_total", db_path) == 18
        assert 1 <= sample(got, "mpsqlite_fsyncs_total", db_path) <= 18
        assert sample(got, "mpsqlite_statements_total", db_path, where="workers",
                      kind="read") == 2
        assert sample(got, "mpsqlite_statements_total", db_path, where="caller",
                      kind="read") == 2
        assert sample(got, "mpsqlite_workers_alive", db_path) == 2
        assert sample(got, "mpsqlite_writer_wait_seconds_count", db_path) == 18
        # the parent reads the same files with prometheus_client's own collector
        reg = CollectorRegistry()
        MultiProcessCollector(reg, path=str(files))
        assert sample(scrape(reg), "mpsqlite_commits_total", db_path) == 18
        assert {f.name.split("_")[0] for f in files.iterdir()} >= {"counter", "gauge",
                                                                    "histogram"}
        pids = {int(f.stem.rsplit("_", 1)[1]) for f in files.iterdir()}
        assert pids == {p.pid for p in procs}
        del other
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(30)
    assert [p.returncode for p in procs] == [0, 0]


def test_snapshot_is_plain_json(db_path):
    with closing(mpsqlite.connect(str(db_path))) as conn:
        conn.execute("create table t(x)")
        snap = metrics.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap[str(db_path)]["caller_writes"] == 1


_FORKING = textwrap.dedent("""
    import os, sys, threading
    import mpsqlite, mpsqlite.metrics
    path, out = sys.argv[1], sys.argv[2]
    mpsqlite.metrics.register(interval=0.1)
    conn = mpsqlite.connect(path)
    conn.execute("create table t(x)")
    for i in range(3):
        conn.execute("insert into t values (?)", (i,))
    conn.commit()
    mpsqlite.metrics.exposition()  # this process's counts are in its files now
    pid = os.fork()
    if pid == 0:
        child = mpsqlite.connect(path)
        for i in range(2):
            child.execute("insert into t values (?)", (10 + i,))
        child.commit()
        child.close()
        body, _ = mpsqlite.metrics.exposition()
        names = [t.name for t in threading.enumerate()]
        with open(out, "wb") as f:
            f.write(body)
        os._exit(0 if "mpsqlite-metrics" in names else 3)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
""")


def test_multiprocess_forked_child_counts_from_zero(tmp_path, db_path):
    files = tmp_path / "prom"
    files.mkdir()
    out = tmp_path / "scrape.txt"
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(files))
    run = subprocess.run([sys.executable, "-c", _FORKING, str(db_path), str(out)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr  # 3: the fork lost the exporter's thread
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(out.read_text()) for s in f.samples}
    # the parent's 4 (create + 3 inserts) once, and the child's own 2: not the parent's again
    assert sample(got, "mpsqlite_statements_total", db_path, where="caller", kind="write") == 6
    assert sample(got, "mpsqlite_commits_total", db_path) == 3
    assert len({f.stem.rsplit("_", 1)[1] for f in files.iterdir()}) == 2


@pytest.fixture
def few_retired(monkeypatch):
    """A registry that keeps the counters of 3 dropped paths, and drops every closed file."""
    from mpsqlite import _database

    mpsqlite.shutdown()  # what other tests left idle is dropped into the real totals
    monkeypatch.setattr(_database, "RETIRED_PATHS", 3)
    monkeypatch.setattr(_database, "IDLE_PLAIN", 0)
    monkeypatch.setattr(_database.registry, "retired", {})
    monkeypatch.setattr(metrics, "_high", {})
    return _database.registry


def test_dropped_paths_beyond_the_bound_are_summed_under_other(registry, tmp_path, few_retired):
    paths = [tmp_path / f"f{i}.db" for i in range(6)]
    sums = []
    for i, path in enumerate(paths):
        _write_file(path, i + 1)
        got = scrape(registry)
        sums.append(sum(v for (name, labels), v in got.items()
                        if name == "mpsqlite_commits_total"))
    assert sums == [2, 4, 6, 8, 10, 12]  # the sum over series never went back
    assert set(few_retired.retired) == {str(p) for p in paths[3:]} | {"(other)"}
    snap = metrics.snapshot()
    assert not {str(p) for p in paths[:3]} & set(snap)
    assert (snap["(other)"]["caller_writes"], snap["(other)"]["commits"]) == (2 + 3 + 4, 6)
    assert [snap[str(p)]["caller_writes"] for p in paths[3:]] == [5, 6, 7]
    # An older path opened again starts from zero; the oldest kept one moves to "(other)".
    _write_file(paths[0], 1)
    snap = metrics.snapshot()
    assert snap[str(paths[0])]["caller_writes"] == 2
    assert snap["(other)"]["caller_writes"] == 2 + 3 + 4 + 5
    assert str(paths[3]) not in snap
    assert len(few_retired.retired) == 4


def test_a_new_file_per_job_keeps_a_bounded_registry(few_retired, tmp_path):
    for i in range(50):
        path = tmp_path / f"job{i}.db"
        _write_file(path, 1)
        path.unlink()
    assert len(few_retired.retired) == 4
    assert metrics.snapshot()["(other)"]["commits"] == 2 * 47


_FOLDING = textwrap.dedent("""
    import sys
    import mpsqlite, mpsqlite.metrics
    from mpsqlite import _database
    _database.RETIRED_PATHS, _database.IDLE_PLAIN = 2, 0
    exporter = mpsqlite.metrics.register(interval=3600)  # synced below, by exposition()
    for path in sys.argv[2:]:
        conn = mpsqlite.connect(path, coordinate=False)
        conn.execute("create table t(x)")
        conn.commit()
        conn.close()
        mpsqlite.metrics.exposition()
    body, _ = mpsqlite.metrics.exposition()
    with open(sys.argv[1], "wb") as f:
        f.write(body)
""")


def test_multiprocess_counts_moved_under_other_are_not_added_twice(tmp_path):
    files = tmp_path / "prom"
    files.mkdir()
    out = tmp_path / "scrape.txt"
    paths = [str(tmp_path / f"f{i}.db") for i in range(5)]
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(files))
    run = subprocess.run([sys.executable, "-c", _FOLDING, str(out), *paths], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr, run.stderr
    commits = {dict(s.labels)["database"]: s.value
               for f in text_string_to_metric_families(out.read_text()) for s in f.samples
               if s.name == "mpsqlite_commits_total"}
    # Files keep every series they were given; "(other)" adds only what none of them had.
    assert {p: commits[p] for p in paths} == dict.fromkeys(paths, 1.0)
    assert commits.get("(other)", 0.0) == 0.0
    assert sum(commits.values()) == 5

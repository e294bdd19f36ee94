"""Helpers that make mpsqlite offload a read, deterministically, through its public behaviour.

mpsqlite first runs every read in the caller. A read outside a transaction
that returned at least 1000 rows through ``fetchall``/``fetchmany`` (or that
spent at least 2 ms of thread CPU in the connection's Python functions) is
remembered as heavy, and its next execution runs on a worker process.
``pool_status()["offloaded_statements"]`` counts those remote runs.

User functions meant to reach a worker are built by the factories below:
each returns a closure, which cloudpickle ships by value, so the worker needs
no import of this test package.
"""

from __future__ import annotations

from typing import Any

#: Rows in the tables built here: comfortably above mpsqlite's 1000-row mark.
BIG = 1500

#: Thread CPU a "CPU-heavy" function burns per call: above mpsqlite's 2 ms mark.
BURN_SECONDS = 0.006


def fill_big(conn: Any, table: str = "big", rows: int = BIG) -> None:
    """Create and commit ``table(x integer primary key, s text)`` with ``rows`` rows 0..rows-1."""
    conn.execute(f"create table {table}(x integer primary key, s text)")
    conn.executemany(f"insert into {table} values (?, ?)", ((i, f"s{i}") for i in range(rows)))
    conn.commit()


def offloaded(conn: Any) -> int:
    """How many reads of ``conn``'s database ran on a worker so far."""
    return conn.pool_status()["offloaded_statements"]



def mark_heavy(conn: Any, sql: str, params: Any = ()) -> list:
    """Run ``sql`` once in the caller with fetchall; it must return enough rows to be heavy."""
    before = offloaded(conn)
    rows = conn.execute(sql, params).fetchall()
    assert offloaded(conn) == before, "the first run of a read must happen in the caller"
    assert len(rows) >= 1000, f"{sql!r} returned {len(rows)} rows: too few to be judged heavy"
    return rows


def run_remote(conn: Any, sql: str, params: Any = ()) -> list:
    """Run ``sql`` (already judged heavy) and check that a worker ran it; return its rows."""
    before = offloaded(conn)
    rows = conn.execute(sql, params).fetchall()
    assert offloaded(conn) == before + 1, f"{sql!r} did not run on a worker"
    return rows


def offload(conn: Any, sql: str, params: Any = ()) -> list:
    """Mark ``sql`` heavy, then run it on a worker; both results must agree. The rows."""
    local = mark_heavy(conn, sql, params)
    remote = run_remote(conn, sql, params)
    assert remote == local
    return remote


def burner() -> Any:
    """A one-argument SQL function that returns its argument after burning CPU.

    Called once per statement it makes the statement heavy by CPU; the worker
    reports the CPU too, so its remote run does not send the statement back."""

    def burn(value: Any) -> Any:
        import time

        start = time.thread_time()
        while time.thread_time() - start < 0.006:
            pass
        return value

    return burn


def staller() -> Any:
    """SQL function ``stall(marker)``: '' burns CPU and returns 0 (marks the statement heavy);
    a path writes this process's pid there and blocks until the process is killed."""

    def stall(marker: str) -> int:
        import os
        import time

        if not marker:
            start = time.thread_time()
            while time.thread_time() - start < 0.006:
                pass
            return 0
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(marker + ".tmp", marker)
        time.sleep(300)
        return 0

    return stall


def spinner() -> Any:
    """SQL function ``spin(n, marker)``: returns ``n`` after a little CPU work; with a marker
    path, the call for n == 100 writes this process's pid there (the statement is running)."""

    def spin(n: int, marker: str) -> int:
        x = 0
        for i in range(200):
            x += i
        if marker and n == 100:
            import os

            with open(marker + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(marker + ".tmp", marker)
        return n

    return spin


#: A count as long as the first ``?``, calling ``spin(n, ?)`` per row: with 2000 and ''
#: it is heavy by CPU; with 10**12 and a marker path it runs until interrupted or killed.
COUNT_SPIN = (
    "with recursive c(n) as (select 1 union all select n + 1 from c where n < ?) "
    "select count(spin(n, ?)) from c"
)


def wait_for_file(path: Any, within: float = 30.0) -> str:
    """The text of ``path`` once a process has written it (atomically, by rename)."""
    import os
    import time

    deadline = time.monotonic() + within
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} was not written within {within} s")
        time.sleep(0.01)
    with open(path) as f:
        return f.read()

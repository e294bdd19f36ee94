"""Child process of the slowdisk scenario: durable writers on one side, driven over stdin.

``python -m bench._writer_child SIDE PATH WORKERS THREADS`` opens ``THREADS`` connections to
the prepared database ``PATH`` on ``SIDE`` (``pragma synchronous=full`` each), prints ``READY``
and then answers one JSON line per command line: ``run SECONDS`` (a timed run of the write
scenario's operation) or ``status`` (commits made, the ``synchronous`` setting, mpsqlite pool
counters). It exits when stdin closes. Running each side in its own process is what lets the
parent give both the same ``LD_PRELOAD`` fsync shim.
"""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any

from . import sides
from .runner import run_threads
from .scenarios_db import _writer_factory


def _answer(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Serve ``run``/``status`` commands for ``argv = [side, path, workers, threads]``."""
    side, path, workers_text, threads_text = argv
    workers = int(workers_text) if workers_text != "-" else None
    threads = int(threads_text)
    conns = [sides.connect(side, path, workers) for _ in range(threads)]
    try:
        for conn in conns:
            conn.execute("pragma synchronous=full")
        counter = itertools.count()
        make_op = _writer_factory(conns, counter)
        committed = 0
        _answer({"ready": True})
        for line in sys.stdin:
            command, *rest = line.split()
            if command == "run":
                s = run_threads(make_op, threads, float(rest[0]))
                committed += s.ops
                _answer({"ops": s.ops, "elapsed": s.elapsed, "errors": s.errors,
                         "latencies_ns": s.latencies_ns, "error_kinds": dict(s.error_kinds)})
            elif command == "status":
                pool: dict[str, Any] = {}
                if side == sides.MP:
                    st = conns[0].pool_status()
                    pool = {k: st.get(k) for k in ("commits", "fsyncs", "errors")}
                (sync,) = conns[0].execute("pragma synchronous").fetchone()
                _answer({"committed": committed, "synchronous": sync, "pool": pool})
            else:
                _answer({"error": f"unknown command {command!r}"})
    finally:
        for conn in conns:
            conn.close()
        sides.shutdown_mp()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Prometheus metrics of the mpsqlite databases in this process (``pip install mpsqlite[metrics]``).

Two lines serve them with ``prometheus_client``::

    import mpsqlite.metrics
    mpsqlite.metrics.register()                    # on prometheus_client.REGISTRY
    body, content_type = mpsqlite.metrics.exposition()   # what a /metrics handler returns

Every series has the label ``database``, the file's path as it was opened:

=====================================  =========  ==============================================
``mpsqlite_statements_total``          counter    statements, by ``where`` they ran (``caller``,
                                                  ``workers``) and ``kind`` (``read``, ``write``)
``mpsqlite_writer_queue_length``       gauge      writers waiting at the writer gate
``mpsqlite_writer_busy``               gauge      1 while a write transaction holds the gate
``mpsqlite_writer_wait_seconds``       histogram  time each write transaction waited for the gate
                                                  (``_count``: transactions let in)
``mpsqlite_writer_timeouts_total``     counter    writers that gave up ("database is locked")
``mpsqlite_commits_total``             counter    commits made durable by group commit
``mpsqlite_fsyncs_total``              counter    fsyncs of the WAL that made them durable
                                                  (commits per fsync: the ratio of their rates)
``mpsqlite_worker_restarts_total``     counter    worker processes replaced after they ended
``mpsqlite_writer_turns_total``        counter    turns of the writer queue shared by the host's
                                                  processes that this process was granted
``mpsqlite_writer_turn_held``          gauge      1 while this process holds that turn
``mpsqlite_workers_alive``             gauge      worker processes running
``mpsqlite_workers_busy``              gauge      of those, serving a read now
``mpsqlite_workers_max``               gauge      the pool's size
``mpsqlite_reads_waiting``             gauge      reads waiting for a worker
=====================================  =========  ==============================================

Cost: mpsqlite counts with plain integer increments, as it always has
(``pool_status()``); the collector reads those counters only when scraped.
Counters never go back: a database dropped after its last connection closed
(``pool_status()`` then forgets it) keeps its totals in the registry, and a
path opened again goes on from them. The registry keeps them for the 1,024
paths dropped most recently (``_database.RETIRED_PATHS``); older paths'
totals are summed in the series of the path ``(other)``, so that a process
that opens a new file per job or per test keeps a bounded number of series.
Such an older path opened again starts a series of its own from zero, which
Prometheus reads as a counter reset. :func:`snapshot` gives the same numbers
as plain dicts, without ``prometheus_client``.

**Several processes** (gunicorn, uWSGI). With ``PROMETHEUS_MULTIPROC_DIR`` set
(before ``prometheus_client`` is first imported, as its own documentation
requires), a collector cannot help: the scraped process sees only itself. So
:func:`register` instead gives each process real multiprocess-mode ``Counter``,
``Gauge`` (``livesum``) and ``Histogram`` objects, and a daemon thread adds
to them every ``interval`` seconds what mpsqlite counted since the last time;
the scraped process catches up at once. ``exposition()`` then merges every
process's files with ``MultiProcessCollector``. Other processes' numbers are up
to ``interval`` old. A forked child starts from zero (and restarts the thread).
As for any multiprocess gauge, call
``prometheus_client.multiprocess.mark_process_dead(worker.pid)`` from
gunicorn's ``child_exit`` hook. The histogram's per-bucket deltas are added
through ``prometheus_client``'s own value objects (``Histogram`` has no public
"add n to bucket" call), checked on first use.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from itertools import accumulate
from typing import Any

from ._database import OTHER_PATHS, add_counters
from ._database import registry as _databases
from ._gate import WAIT_BUCKETS

__all__ = ["MpsqliteCollector", "MultiprocessExporter", "exposition", "multiprocess", "register",
           "snapshot"]

log = logging.getLogger("mpsqlite.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LABEL = "database"
_COUNTERS = ("caller_reads", "caller_writes", "worker_reads", "writer_grants",
             "writer_wait_seconds", "writer_waits", "writer_timeouts", "commits", "fsyncs",
             "worker_restarts", "writer_turns")
_GAUGES = ("writer_queue", "writer_busy", "workers_alive", "workers_busy", "workers_max",
           "reads_waiting", "writer_turn_held")
_STATEMENTS = (("caller", "read", "caller_reads"), ("caller", "write", "caller_writes"),
               ("workers", "read", "worker_reads"))
#: (metric name, snapshot key, help) of the plain counters and gauges.
_COUNTER_DOCS = (
    ("mpsqlite_writer_timeouts", "writer_timeouts",
     "Writers that gave up waiting for the writer gate (database is locked)."),
    ("mpsqlite_commits", "commits", "Commits made durable by group commit."),
    ("mpsqlite_fsyncs", "fsyncs", "fsyncs of the WAL done by group commit."),
    ("mpsqlite_worker_restarts", "worker_restarts",
     "Worker processes replaced after they ended."),
    ("mpsqlite_writer_turns", "writer_turns",
     "Turns of the writer queue shared with other processes granted to this process."),
)
_GAUGE_DOCS = (
    ("mpsqlite_writer_queue_length", "writer_queue", "Writers waiting at the writer gate."),
    ("mpsqlite_writer_busy", "writer_busy", "1 while a write transaction holds the gate."),
    ("mpsqlite_workers_alive", "workers_alive", "Worker processes running."),
    ("mpsqlite_workers_busy", "workers_busy", "Worker processes serving a read now."),
    ("mpsqlite_workers_max", "workers_max", "Worker processes the pool may run."),
    ("mpsqlite_reads_waiting", "reads_waiting", "Reads waiting for a worker."),
    ("mpsqlite_writer_turn_held", "writer_turn_held",
     "1 while this process holds the file's turn in the writer queue of all processes."),
)
_STATEMENTS_DOC = "Statements run, by where they ran (caller or workers) and kind."
_WAIT_DOC = "Seconds each write transaction waited for the writer gate."

_lock = threading.Lock()
_high: dict[str, dict[str, Any]] = {}  # the highest totals reported so far, by path


def _zero() -> dict[str, Any]:
    z: dict[str, Any] = dict.fromkeys(_COUNTERS, 0)
    z["writer_wait_seconds"] = 0.0
    z["writer_waits"] = [0] * (len(WAIT_BUCKETS) + 1)
    return z


def _plus(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The counters of two snapshots added (gauges left out)."""
    return {name: ([x + y for x, y in zip(a[name], b[name])] if name == "writer_waits"
                   else a[name] + b[name]) for name in _COUNTERS}


def _at_least(now: dict[str, Any], floor: dict[str, Any]) -> None:
    """Raise ``now`` to ``floor``, number by number (a drop seen mid-update is not real)."""
    for name in _COUNTERS:
        if name == "writer_waits":
            now[name] = [max(a, b) for a, b in zip(now[name], floor[name])]
        else:
            now[name] = max(now[name], floor[name])


def snapshot() -> dict[str, dict[str, Any]]:
    """Totals and current gauges per database path of this process, as plain numbers.

    Counters: ``caller_reads``, ``caller_writes``, ``worker_reads``, ``writer_grants``,
    ``writer_wait_seconds``, ``writer_waits`` (waits by ``_gate.WAIT_BUCKETS``, the last
    one longer; grants not in it did not wait), ``writer_timeouts``, ``commits``,
    ``fsyncs``, ``worker_restarts``. Gauges: ``writer_queue``, ``writer_busy``,
    ``workers_alive``, ``workers_busy``, ``workers_max``, ``reads_waiting``.
    """
    with _databases.lock:
        totals = {path: {**c, "writer_waits": list(c["writer_waits"])}
                  for path, c in _databases.retired.items()}
        live = list(_databases.databases.values())
        counted = [(db.path, db.counters()) for db in live]
    for path, c in counted:
        add_counters(totals.setdefault(path, _zero()), c)
    gauges: dict[str, dict[str, int]] = {}
    for db in live:
        g = gauges.setdefault(db.path, dict.fromkeys(_GAUGES, 0))
        for name, value in db.gauges().items():
            g[name] += value
    with _lock:
        for path, now in totals.items():
            floor = _high.get(path)
            if floor is not None:
                _at_least(now, floor)
            _high[path] = {**now, "writer_waits": list(now["writer_waits"])}
        for path in [p for p in _high if p not in totals]:
            del _high[path]  # summed under OTHER_PATHS now
    return {path: {**c, **gauges.get(path, dict.fromkeys(_GAUGES, 0))}
            for path, c in totals.items()}


def _buckets(c: dict[str, Any]) -> list[int]:
    """Grants per wait bucket (each bound of WAIT_BUCKETS, then longer), not cumulative."""
    waits = list(c["writer_waits"])
    waits[0] += c["writer_grants"] - sum(waits)  # grants that did not wait
    return waits


def _cumulative(c: dict[str, Any]) -> list[int]:
    """Histogram buckets as Prometheus counts them: ``le`` each bound, then +Inf."""
    return list(accumulate(_buckets(c)))


class MpsqliteCollector:
    """A ``prometheus_client`` collector reading mpsqlite's counters when scraped.

    It satisfies ``prometheus_client.registry.Collector`` (``collect``/``describe``)."""

    def collect(self) -> list[Any]:
        """One metric family per metric of the module docstring, one series per path."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snap = snapshot()
        statements = CounterMetricFamily("mpsqlite_statements", _STATEMENTS_DOC,
                                         labels=[LABEL, "where", "kind"])
        wait = HistogramMetricFamily("mpsqlite_writer_wait_seconds", _WAIT_DOC, labels=[LABEL])
        counters = [CounterMetricFamily(n, doc, labels=[LABEL]) for n, _, doc in _COUNTER_DOCS]
        gauges = [GaugeMetricFamily(n, doc, labels=[LABEL]) for n, _, doc in _GAUGE_DOCS]
        bounds = [repr(float(b)) for b in WAIT_BUCKETS] + ["+Inf"]
        for path, c in sorted(snap.items()):
            for where, kind, key in _STATEMENTS:
                statements.add_metric([path, where, kind], c[key])
            wait.add_metric([path], list(zip(bounds, _cumulative(c))), c["writer_wait_seconds"])
            for family, (_, key, _) in zip(counters, _COUNTER_DOCS):
                family.add_metric([path], c[key])
            for gauge, (_, key, _) in zip(gauges, _GAUGE_DOCS):
                gauge.add_metric([path], c[key])
        return [statements, wait, *counters, *gauges]

    def describe(self) -> list[Any]:
        """The families without samples, so registering checks the names at once."""
        return self.collect()


class MultiprocessExporter:
    """Multiprocess mode: this process's counts, added to ``prometheus_client``'s files."""

    def __init__(self, interval: float) -> None:
        from prometheus_client import Counter, Gauge, Histogram, values

        if values.ValueClass is values.MutexValue:
            raise RuntimeError(
                f"{MULTIPROC_ENV} was set after prometheus_client was imported: set it "
                "before the first import (as for any prometheus_client multiprocess setup)")
        self.interval = interval
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._sent: dict[str, dict[str, Any]] = {}
        self._statements = Counter("mpsqlite_statements", _STATEMENTS_DOC,
                                   [LABEL, "where", "kind"], registry=None)
        self._wait = Histogram("mpsqlite_writer_wait_seconds", _WAIT_DOC, [LABEL],
                               buckets=WAIT_BUCKETS, registry=None)
        self._counters = [Counter(n, doc, [LABEL], registry=None) for n, _, doc in _COUNTER_DOCS]
        self._gauges = [Gauge(n, doc, [LABEL], registry=None, multiprocess_mode="livesum")
                        for n, _, doc in _GAUGE_DOCS]
        self._thread: threading.Thread | None = None

    def sync(self) -> None:
        """Add what mpsqlite counted since the last sync; set the gauges."""
        with self._lock:
            if os.getpid() != self._pid:  # a forked child: its counts start from zero
                self._pid, self._sent = os.getpid(), {}
            snap = snapshot()
            # Paths whose counts moved to OTHER_PATHS: what was sent of them is not sent
            # again. (prometheus_client's files keep every series they were given.)
            folded = [(path, self._sent.pop(path)) for path in list(self._sent)
                      if path not in snap]
            for path, now in snap.items():
                before = self._sent.get(path) or _zero()
                if path == OTHER_PATHS:
                    for _, sent in folded:
                        before = _plus(before, sent)
                for where, kind, key in _STATEMENTS:
                    _inc(self._statements.labels(path, where, kind), now[key] - before[key])
                for metric, (_, key, _) in zip(self._counters, _COUNTER_DOCS):
                    _inc(metric.labels(path), now[key] - before[key])
                for gauge, (_, key, _) in zip(self._gauges, _GAUGE_DOCS):
                    gauge.labels(path).set(now[key])
                child = self._wait.labels(path)
                if len(getattr(child, "_buckets", ())) != len(WAIT_BUCKETS) + 1:
                    raise RuntimeError("this prometheus_client's Histogram has no per-bucket "
                                       "values to add to; use prometheus_client>=0.17")
                for value, a, b in zip(child._buckets, _buckets(now), _buckets(before)):
                    _inc(value, a - b)
                _inc(child._sum, now["writer_wait_seconds"] - before["writer_wait_seconds"])
                self._sent[path] = now

    def start(self) -> None:
        """Run :meth:`sync` every ``interval`` seconds on a daemon thread (once per process)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="mpsqlite-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.interval):
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - a failed export must not end the exports
                log.exception("mpsqlite.metrics: writing the multiprocess counters failed")


def _inc(value: Any, amount: float) -> None:
    if amount > 0:
        value.inc(amount)


_exporter: MultiprocessExporter | None = None
_register_lock = threading.Lock()  # not _lock: registering collects once (describe)
_collectors: weakref.WeakKeyDictionary[Any, MpsqliteCollector] = weakref.WeakKeyDictionary()


def multiprocess() -> bool:
    """Whether ``PROMETHEUS_MULTIPROC_DIR`` asks for prometheus_client's multiprocess mode."""
    return bool(os.environ.get(MULTIPROC_ENV))


def register(registry: Any = None, *,
             interval: float = 1.0) -> MpsqliteCollector | MultiprocessExporter:
    """Export mpsqlite's metrics (idempotent): a collector on ``registry`` (default
    ``prometheus_client.REGISTRY``), or in multiprocess mode this process's exporter."""
    global _exporter
    if multiprocess():
        with _register_lock:
            if _exporter is None:
                _exporter = MultiprocessExporter(interval)
            exporter = _exporter
        exporter.start()
        return exporter
    if registry is None:
        from prometheus_client import REGISTRY as registry
    with _register_lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = _collectors[registry] = MpsqliteCollector()
            registry.register(collector)
    return collector


def exposition(registry: Any = None) -> tuple[bytes, str]:
    """The text format body and its Content-Type: ``registry`` (registered here first),
    or in multiprocess mode every process's files merged."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    if multiprocess():
        from prometheus_client.multiprocess import MultiProcessCollector

        exporter = register()
        assert isinstance(exporter, MultiprocessExporter)
        exporter.sync()
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE_LATEST
    if registry is None:
        from prometheus_client import REGISTRY as registry
    register(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _after_fork_in_child() -> None:
    global _lock, _register_lock
    _lock, _register_lock = threading.Lock(), threading.Lock()
    _high.clear()
    if _exporter is not None:
        _exporter._lock = threading.Lock()
        _exporter._thread = None
        _exporter.start()


os.register_at_fork(after_in_child=_after_fork_in_child)

"""Deterministic benchmark datasets, generated once and cached in ``bench/.data`` by size.

Every dataset is built by plain ``sqlite3`` from a fixed random seed into a temporary file
that is renamed into place when complete, so an interrupted build never leaves a half file.
Each measured side then gets its own byte-for-byte copy (:func:`copy_for`).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from .runner import log

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / ".data"
SEED = 20240611
VERSION = 1  # part of every cache key: bump when a generator changes what it writes
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 "

TABLE_T = "create table t (id integer primary key, a integer not null, b text not null, c real)"


def cached(data_dir: Path, key: str, build: Callable[[Path], None]) -> Path:
    """Path of dataset ``key`` in ``data_dir``; ``build(tmp_path)`` creates it when missing."""
    data_dir.mkdir(parents=True, exist_ok=True)
    final = data_dir / f"{key}_v{VERSION}.db"
    if final.exists():
        return final
    tmp = data_dir / f"{key}_v{VERSION}.{os.getpid()}.building"
    _remove_db(tmp)
    started = time.perf_counter()
    log(f"data: building {final.name} ...")
    build(tmp)
    con = sqlite3.connect(tmp)
    try:
        con.execute("pragma wal_checkpoint(truncate)")
    finally:
        con.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, final)
    log(f"data: {final.name} ready in {time.perf_counter() - started:.1f}s")
    return final


def copy_for(src: Path, dest_dir: Path, name: str) -> Path:
    """A fresh copy of dataset ``src`` named ``name`` in ``dest_dir`` (no stale -wal/-shm)."""
    dest = dest_dir / name
    _remove_db(dest)
    shutil.copyfile(src, dest)
    return dest


def table_t(data_dir: Path, rows: int) -> Path:
    """The main table ``t(id, a, b, c)`` with ``rows`` rows, in WAL mode."""
    return cached(data_dir, f"t_{rows}", lambda p: _build_table_t(p, rows))


def _build_table_t(path: Path, rows: int) -> None:
    rng = random.Random(SEED)
    con = sqlite3.connect(path)
    con.execute("pragma journal_mode=wal")
    con.execute(TABLE_T)
    batch = 20_000
    step = max(rows // 10, 1)
    next_report = step
    for lo in range(1, rows + 1, batch):
        hi = min(lo + batch, rows + 1)
        con.executemany(
            "insert into t values (?, ?, ?, ?)",
            (
                (i, rng.randrange(1_000_000), _text(rng), rng.random() * 1000.0)
                for i in range(lo, hi)
            ),
        )
        if hi - 1 >= next_report or hi > rows:
            log(f"data: t_{rows}: {100 * (hi - 1) // rows:3d}% ({hi - 1:,} rows)")
            next_report += step
    con.commit()
    con.close()


def _text(rng: random.Random) -> str:
    return "".join(rng.choices(_ALPHABET, k=rng.randrange(16, 48)))


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

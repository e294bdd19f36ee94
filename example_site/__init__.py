"""Example bookshop on CherryPy + SQLAlchemy: the showcase and web-benchmark target of mpsqlite.

Run it with ``python -m example_site``; mount it in tests with :func:`make_app`.
"""

from .app import make_app
from .loadmix import HEAVY_MIX, LOAD_MIX, WRITE_MIX, heavy_mix, load_mix, pick, write_mix
from .seed import DEFAULT_BOOKS, SEED, ensure_seeded, seed

__all__ = [
    "DEFAULT_BOOKS",
    "HEAVY_MIX",
    "LOAD_MIX",
    "SEED",
    "WRITE_MIX",
    "ensure_seeded",
    "heavy_mix",
    "load_mix",
    "make_app",
    "pick",
    "seed",
    "write_mix",
]

"""Example bookshop on CherryPy + SQLAlchemy: the showcase and web-benchmark target of mpsqlite.

Run it with ``python -m example_site``; mount it in tests with :func:`make_app`.
"""

from .app import make_app
from .loadmix import LOAD_MIX, WRITE_MIX, load_mix, pick, write_mix
from .seed import DEFAULT_BOOKS, SEED, ensure_seeded, seed

__all__ = [
    "DEFAULT_BOOKS",
    "LOAD_MIX",
    "SEED",
    "WRITE_MIX",
    "ensure_seeded",
    "load_mix",
    "make_app",
    "pick",
    "seed",
    "write_mix",
]

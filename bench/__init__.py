"""Benchmarks: mpsqlite against plain ``sqlite3`` threads and the stock ``sqlite://`` dialect.

Run from the repository root: ``python -m bench --quick`` (about a minute and a half) or
``python -m bench`` (full mode). See ``bench/README_SECTION.md`` for what is measured and how.
"""

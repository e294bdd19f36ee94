"""Benchmarks: mpsqlite against plain ``sqlite3`` threads and the stock ``sqlite://`` dialect.

Run from the repository root: ``python -m bench --smoke`` (seconds), ``--quick`` (a few
minutes) or no flag (full mode, at least 5 interleaved repetitions per scenario). Results go to
the git-ignored ``bench/out/``; ``--reference`` writes the committed ``bench/results/``
files. See ``docs/benchmarks.md`` for what is measured and how.
"""

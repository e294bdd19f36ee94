#!/usr/bin/env python3
"""Side-by-side counts of a project's suite on stock sqlite3 and on mpsqlite.

    python tools/ecosystem/compare.py django [peewee alembic ...] [--limit N]
    python tools/ecosystem/compare.py --files STOCK.jsonl MPSQLITE.jsonl

Reads <cache>/results/<project>/{stock,mpsqlite}.jsonl (one JSON line per
test outcome, written by the harness) and their .meta.json, and prints:

* the counts per side (passed, failed, error, skipped, xfail, xpass, total)
  with the wall time and how each run ended;
* REGRESSIONS: test ids that passed on stock (passed or xfail) but failed or
  errored on mpsqlite, grouped by their cause (the exception line of the
  traceback, numbers and addresses masked), the biggest groups first, with a
  traceback snippet of the first test of each group;
* counts of tests skipped only on mpsqlite, not run on mpsqlite at all (a run
  cut short by its timeout), and fixed on mpsqlite (failing on stock only).

The full lists go to <cache>/results/<project>/regressions.txt and
regressions.json next to the inputs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _eco  # noqa: E402

OUTCOMES = ("passed", "failed", "error", "skipped", "xfail", "xpass")
_RANK = {"passed": 0, "xfail": 0, "skipped": 1, "xpass": 2, "failed": 3, "error": 4}
GOOD = {"passed", "xfail"}
BAD = {"failed", "error", "xpass"}

_EXC_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Timeout|Interrupt|Warning|Failed|Failure)"
    r"|AssertionError|[\w.]*\.[A-Z]\w+)(:.*)?$"
)


_DRIVER_IN_ID = re.compile(r"sqlite\+(mpsqlite|pysqlite)")


def norm_id(test_id: str) -> str:
    """The same test on either side: SQLAlchemy's plugin names test classes after
    the URL (``Test_sqlite+pysqlite_3_40_1`` vs ``Test_sqlite+mpsqlite_3_40_1``)."""
    return _DRIVER_IN_ID.sub("sqlite+DRIVER", test_id)


def load(path: Path) -> dict[str, dict]:
    """id -> worst record of that id (ids normalised by norm_id)."""
    best: dict[str, dict] = {}
    if not path.exists():
        return best
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        rec["id"] = norm_id(rec["id"])
        old = best.get(rec["id"])
        if old is None or _RANK.get(rec["outcome"], 5) > _RANK.get(old["outcome"], 5):
            best[rec["id"]] = rec
    return best


def counts(results: dict[str, dict]) -> Counter:
    c = Counter(r["outcome"] for r in results.values())
    c["total"] = len(results)
    return c


def cause(detail: str) -> str:
    """The exception line of a traceback, masked so that similar failures group."""
    lines = [ln.rstrip() for ln in detail.splitlines() if ln.strip()]
    found = ""
    for ln in reversed(lines):
        s = ln.strip()
        if s.startswith(("File ", "^", "~")) or s == "[...]":
            continue
        if _EXC_LINE.match(s) or s.startswith("E   "):
            found = s
            break
    if not found:
        found = lines[-1].strip() if lines else "(no traceback)"
    found = found.removeprefix("E   ").strip()
    found = re.sub(r"0x[0-9a-fA-F]+", "0x?", found)
    found = re.sub(r"\b\d+(\.\d+)?\b", "N", found)
    return found[:200]


def snippet(detail: str, n: int = 14) -> str:
    lines = [ln for ln in detail.splitlines() if ln.strip()]
    return "\n".join("      " + ln for ln in lines[-n:])


def read_meta(d: Path, side: str) -> dict:
    p = d / f"{side}.meta.json"
    return json.loads(p.read_text()) if p.exists() else {}


def report(title: str, stock: dict[str, dict], mp: dict[str, dict], meta: dict[str, dict],
           out_dir: Path | None, limit: int, groups: int) -> None:
    cs, cm = counts(stock), counts(mp)
    print("=" * 78)
    print(title)
    for side in _eco.SIDES:
        m = meta.get(side) or {}
        if m.get("what"):
            print(f"  {side}: {m['what']}")
    print("-" * 78)
    print(f"  {'':14}{'stock':>12}{'mpsqlite':>12}")
    for key in (*OUTCOMES, "total"):
        print(f"  {key:14}{cs.get(key, 0):>12}{cm.get(key, 0):>12}")

    def end(m: dict) -> str:
        if not m:
            return "not run"
        rc = m.get("exit")
        return "TIMEOUT" if rc is None else f"exit {rc}"

    ms, mm = meta.get("stock") or {}, meta.get("mpsqlite") or {}
    print(f"  {'wall seconds':14}{ms.get('seconds', '-'):>12}{mm.get('seconds', '-'):>12}")
    print(f"  {'ended':14}{end(ms):>12}{end(mm):>12}")
    if out_dir is not None:
        alias = out_dir / "mpsqlite.jsonl.alias.json"
        if alias.exists():
            use = json.loads(alias.read_text())
            made = use.get("connections", {})
            sums = use.get("pool_counter_maxima_summed", {})
            keys = ("statements", "local_statements", "offloaded_statements", "commits",
                    "writer_grants", "restarts", "errors")
            shown = ", ".join(f"{k}={sums[k]:g}" for k in keys if k in sums)
            print(f"  mpsqlite side: connections via the sqlite3 alias {made}; "
                  f"{use.get('databases_seen', 0)} databases, "
                  f"{use.get('worker_pids_seen', 0)} worker pids seen; pool counters "
                  f"(max per database, summed): {shown or '-'}")
            if not any("mpsqlite" in k for k in made):
                print("  WARNING: the code under test opened no mpsqlite connection: "
                      "the mpsqlite column is NOT an mpsqlite run")

    regress = sorted(i for i, r in stock.items() if r["outcome"] in GOOD
                     and i in mp and mp[i]["outcome"] in BAD)
    skipped_only = sorted(i for i, r in stock.items() if r["outcome"] in GOOD
                          and i in mp and mp[i]["outcome"] == "skipped")
    not_run = sorted(i for i in stock if i not in mp)
    fixed = sorted(i for i, r in stock.items() if r["outcome"] in BAD
                   and i in mp and mp[i]["outcome"] in GOOD)
    only_mp = sorted(i for i in mp if i not in stock)
    print("-" * 78)
    print(f"  regressions (pass on stock, fail/error on mpsqlite): {len(regress)}")
    print(f"  pass on stock, skipped on mpsqlite:                  {len(skipped_only)}")
    print(f"  run on stock, not run on mpsqlite:                   {len(not_run)}")
    print(f"  fail on stock, pass on mpsqlite:                     {len(fixed)}")
    print(f"  run on mpsqlite only (e.g. setUpClass ids):          {len(only_mp)}")

    by_cause: dict[str, list[str]] = defaultdict(list)
    for i in regress:
        by_cause[cause(mp[i].get("detail", ""))].append(i)
    # errors recorded only on mpsqlite (setUpClass/module errors) are causes too
    for i in only_mp:
        if mp[i]["outcome"] in BAD:
            by_cause[cause(mp[i].get("detail", ""))].append(i)
    ranked = sorted(by_cause.items(), key=lambda kv: -len(kv[1]))
    if ranked:
        print("-" * 78)
        print(f"  top causes on mpsqlite ({len(ranked)} distinct):")
        for c, ids in ranked[:groups]:
            print(f"  [{len(ids):4}] {c}")
            print(f"         e.g. {ids[0]}")
            print(snippet(mp[ids[0]].get("detail", "")))
    if regress:
        print("-" * 78)
        shown = regress if limit <= 0 else regress[:limit]
        print(f"  regressions ({len(regress)}" + (f", first {len(shown)}" if len(shown) <
                                                  len(regress) else "") + "):")
        for i in shown:
            print(f"    {mp[i]['outcome']:6} {i}")
    if out_dir is not None:
        with open(out_dir / "regressions.txt", "w", encoding="utf-8") as fh:
            for i in regress:
                fh.write(f"{mp[i]['outcome']}\t{i}\t{cause(mp[i].get('detail', ''))}\n")
        (out_dir / "regressions.json").write_text(json.dumps({
            "regressions": regress, "skipped_only_on_mpsqlite": skipped_only,
            "not_run_on_mpsqlite": not_run, "fixed_on_mpsqlite": fixed,
            "causes": {c: ids for c, ids in ranked},
            "counts": {"stock": dict(cs), "mpsqlite": dict(cm)},
        }, indent=1))
        print(f"  full lists: {out_dir / 'regressions.txt'}, {out_dir / 'regressions.json'}")
    print("=" * 78)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("projects", nargs="*", default=[])
    p.add_argument("--files", nargs=2, metavar=("STOCK", "MPSQLITE"))
    p.add_argument("--limit", type=int, default=100,
                   help="regression ids to print (0: all; the files have all)")
    p.add_argument("--causes", type=int, default=12, help="cause groups to print")
    a = p.parse_args(argv)
    if a.files:
        report(f"{a.files[0]} vs {a.files[1]}", load(Path(a.files[0])), load(Path(a.files[1])),
               {}, None, a.limit, a.causes)
        return 0
    projects = a.projects or sorted(
        d.name for d in (_eco.cache_dir() / "results").glob("*") if d.is_dir())
    for project in projects:
        d = _eco.results_dir(project)
        meta = {s: read_meta(d, s) for s in _eco.SIDES}
        version = (meta.get("stock") or meta.get("mpsqlite") or {}).get("version", "?")
        report(f"{project} {version}", load(d / "stock.jsonl"), load(d / "mpsqlite.jsonl"),
               meta, d, a.limit, a.causes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

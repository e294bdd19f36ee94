"""Output of a benchmark run: a terminal table, a JSON file and a PNG chart of the ratios."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .runner import fmt_num


def table(results: list[dict[str, Any]]) -> str:
    """The result rows as an aligned text (and markdown) table."""
    head = [
        "scenario", "threads", "workers", "plain", "mpsqlite", "ratio",
        "p50 ms plain/mp", "p99 ms plain/mp", "errors plain/mp",
    ]
    lines = [head]
    for r in results:
        plain, mp = r.get("plain") or {}, r.get("mp") or {}
        unit = r.get("unit", "")
        lines.append([
            r["scenario"],
            str(r["threads"]),
            "-" if r.get("workers") is None else str(r["workers"]),
            _with_unit(plain.get("throughput"), unit),
            _with_unit(mp.get("throughput"), unit),
            _ratio(r.get("ratio")),
            f"{_ms(plain.get('p50_ms'))} / {_ms(mp.get('p50_ms'))}",
            f"{_ms(plain.get('p99_ms'))} / {_ms(mp.get('p99_ms'))}",
            f"{plain.get('errors', '-')} / {mp.get('errors', '-')}",
        ])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = []
    for n, row in enumerate(lines):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            out.append("| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(out)


def resources_table(res: dict[str, Any]) -> str:
    """Resource figures (memory, start-up) as a short markdown table."""
    if not res:
        return ""
    rows = [("figure", "value")]
    for key, value in res.items():
        if isinstance(value, float):
            value = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
        rows.append((key, str(value)))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    out = [f"| {rows[0][0].ljust(w0)} | {rows[0][1].ljust(w1)} |", f"| {'-' * w0} | {'-' * w1} |"]
    out += [f"| {a.ljust(w0)} | {b.ljust(w1)} |" for a, b in rows[1:]]
    return "\n".join(out)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (a partial file never replaces a good one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


def write_png(path: Path, results: list[dict[str, Any]], title: str) -> bool:
    """Bar chart of the throughput ratios (log scale, 1 = parity); False when nothing to plot."""
    rows = [r for r in results if r.get("ratio")]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_label(r) for r in rows]
    values = [r["ratio"] for r in rows]
    colors = ["#2a9d8f" if v >= 1 else "#e76f51" for v in values]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.6))
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    lo, hi = min(values + [1.0]), max(values + [1.0])
    ax.set_xlim(10 ** math.floor(math.log10(lo * 0.8)), 10 ** math.ceil(math.log10(hi * 1.25)))
    ax.axvline(1.0, color="black", linewidth=0.8)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}x", va="center", fontsize=7)
    ax.set_xlabel("throughput ratio mpsqlite / plain (log scale; > 1 means mpsqlite is faster)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _label(r: dict[str, Any]) -> str:
    w = "" if r.get("workers") is None else f" w={r['workers']}"
    return f"{r['scenario']} t={r['threads']}{w}"


def _with_unit(x: float | None, unit: str) -> str:
    return "-" if x is None else f"{fmt_num(x)} {unit}".strip()


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 1 else f"{x:.1f}"

"""Output of a benchmark run: a terminal table, a JSON file and a PNG chart of the ratios."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .runner import fmt_num


def table(results: list[dict[str, Any]]) -> str:
    """The result rows as an aligned text (and markdown) table."""
    head = [
        "scenario", "threads", "workers", "plain", "mpsqlite", "ratio (min-max)",
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
            _ratio(r),
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


def details_table(results: list[dict[str, Any]]) -> str:
    """What the main table has no column for: procs' slowest attempt and fairness, fresh's
    milliseconds per file and cost ratio, gunicorn's baselines; "" when none ran."""
    lines: list[list[str]] = []
    for r in results:
        name = f"{r['scenario']} t={r['threads']}"
        if r["scenario"] == "procs":
            for side in ("plain", "mp"):
                s = r.get(side)
                if s:
                    fair = "-" if s.get("fairness") is None else f"{s['fairness']:.2f}"
                    if s.get("starved_threads"):
                        fair += f" ({s['starved_threads']} threads starved)"
                    lines.append([name, side, f"slowest {_ms(s.get('slowest_ms'))} ms, "
                                  f"fairness {fair}, errors {s['errors']} "
                                  f"{s['error_kinds'] or ''}".rstrip()])
            if r.get("ratio_slowest") is not None:
                lines.append([name, "mp/plain",
                              f"slowest {r['ratio_slowest']:.2f}x "
                              f"({r['ratio_slowest_min']:.2f}-{r['ratio_slowest_max']:.2f})"])
        elif r["scenario"] == "fresh":
            for side in ("plain", "mp"):
                s = r.get(side)
                if s:
                    started = (r.get("processes_started") or {}).get(side, "-")
                    lines.append([name, side, f"{_ms(s.get('ms_per_file'))} ms per file, "
                                  f"{started} processes started"])
            if r.get("cost_ratio") is not None:
                lines.append([name, "mp/plain", f"cost {r['cost_ratio']:.2f}x "
                              f"({r['cost_ratio_min']:.2f}-{r['cost_ratio_max']:.2f})"])
        elif r.get("baseline"):
            lines.append([name, "plain/mp", f"plain: {r['baseline']}; mp: {r.get('server', '')}"])
    if not lines:
        return ""
    rows = [["row", "side", "details"], *lines]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    out.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
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
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


CAPTION = (
    "t = caller threads (web, gunicorn: client connections; write, slowdisk, procs: writer "
    "threads, procs over all processes);\nw = mpsqlite worker processes (under gunicorn: per "
    "server process; none shown: mpsqlite's default).\n"
    "Bar: median over repetitions of the ratio mpsqlite/plain (each repetition runs both sides "
    "back to back); whisker: its min-max.\n"
    "Throughput and p99: each side's median over the repetitions."
)
_UNITS = {"queries/s": "q/s"}
_RATIO_WIDTH = 22  # "11.74x (10.59-12.22)" and a space
_HEADER = "ratio (min-max)".ljust(_RATIO_WIDTH) + "mpsqlite vs plain"


def write_png(path: Path, results: list[dict[str, Any]], title: str) -> bool:
    """Bar chart of the throughput ratios (log scale, 1 = parity); False when nothing to plot."""
    rows = [r for r in results if r.get("ratio")]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, NullLocator

    values = [r["ratio"] for r in rows]
    lows = [r.get("ratio_min") or v for r, v in zip(rows, values)]
    highs = [r.get("ratio_max") or v for r, v in zip(rows, values)]
    colors = ["#2a9d8f" if v >= 1 else "#e76f51" for v in values]
    labels = [_label(r) for r in rows]
    height = 0.32 * len(rows) + 1.9
    fig = plt.figure(figsize=(11.5, height))
    left = 0.02 + 0.0062 * max(len(label) for label in labels)  # about 8 pt text per char
    ax = fig.add_axes((left, 1.15 / height, 0.56 - left, 1 - 1.6 / height))
    ys = list(range(len(rows)))
    ax.barh(ys, [v - 1 for v in values], left=1, color=colors, height=0.7)
    ax.errorbar(values, ys, xerr=[[v - lo for v, lo in zip(values, lows)],
                                  [hi - v for v, hi in zip(values, highs)]],
                fmt="none", ecolor="#333333", elinewidth=0.8, capsize=2)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xscale("log")
    k_lo = math.floor(math.log2(min(lows + [0.5]) * 0.95))
    k_hi = math.ceil(math.log2(max(highs + [2.0]) * 1.05))
    ax.set_xlim(2.0 ** k_lo, 2.0 ** k_hi)
    ticks = [2.0 ** k for k in range(k_lo, k_hi + 1)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}x" if t >= 0.25 else f"1/{round(1 / t)}x" for t in ticks],
                       fontsize=8)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.axvline(1.0, color="black", linewidth=0.9)
    ax.set_xlabel("throughput mpsqlite / plain sqlite3 (log scale)", fontsize=8)
    side_text = {"transform": ax.get_yaxis_transform(), "fontsize": 7.5, "family": "monospace"}
    ax.text(1.02, -0.75, _HEADER, va="bottom", weight="bold", **side_text)
    for y, r in enumerate(rows):
        ax.text(1.02, y, _annotation(r), va="center", **side_text)
    fig.legend(handles=[Patch(color="#2a9d8f", label="mpsqlite faster"),
                        Patch(color="#e76f51", label="mpsqlite slower")],
               loc="lower right", bbox_to_anchor=(0.99, 0.02), ncol=2, fontsize=7.5,
               frameon=False)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.text(0.01, 0.02, CAPTION, fontsize=7, va="bottom", ha="left", color="#333333")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _annotation(r: dict[str, Any]) -> str:
    """``1.87x (1.52-2.10)  mp 4.76k vs 2.54k commits/s`` (+ p99 for web rows)."""
    plain, mp = r.get("plain") or {}, r.get("mp") or {}
    unit = _UNITS.get(r.get("unit", ""), r.get("unit", ""))
    spread = ""
    if r.get("ratio_min") is not None and r.get("ratios") and len(r["ratios"]) > 1:
        spread = f" ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
    text = (f"{r['ratio']:.2f}x{spread} ".ljust(_RATIO_WIDTH)
            + f"{short_num(mp.get('throughput'))} vs {short_num(plain.get('throughput'))} {unit}")
    if unit == "req/s" and (mp.get("p99_ms") or plain.get("p99_ms")):
        text += f", p99 {_ms(mp.get('p99_ms'))} vs {_ms(plain.get('p99_ms'))} ms"
    return text


def short_num(x: float | None) -> str:
    """12345 -> 12.3k, 1234567 -> 1.23M, 8.571 -> 8.57."""
    if x is None:
        return "-"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            v = x / scale
            return f"{v:.3g}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return f"{x:.3g}"


def _label(r: dict[str, Any]) -> str:
    w = "" if r.get("workers") is None else f" w={r['workers']}"
    return f"{r['scenario']} t={r['threads']}{w}"


def _with_unit(x: float | None, unit: str) -> str:
    return "-" if x is None else f"{fmt_num(x)} {unit}".strip()


def _ratio(r: dict[str, Any]) -> str:
    x = r.get("ratio")
    if x is None:
        return "-"
    if r.get("ratio_min") is None or len(r.get("ratios") or ()) < 2:
        return f"{x:.2f}x"
    return f"{x:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 1 else f"{x:.1f}"

"""PNG plots of the benchmark results (matplotlib, from the `bench` extra)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def latency_vs_concurrency(data: dict[str, Any], path: Path) -> Path:
    """p50/p99 latency and QPS against closed-loop concurrency (scenario 1)."""
    plt = _pyplot()
    rows = data["rows"]
    levels = [r["concurrency"] for r in rows]
    fig, left = plt.subplots(figsize=(7, 4), dpi=120)
    left.plot(levels, [r["p50_ms"] for r in rows], "o-", label="p50 latency")
    left.plot(levels, [r["p99_ms"] for r in rows], "s-", label="p99 latency")
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xticks(levels, [str(c) for c in levels])
    left.set_xlabel("concurrent queries (closed loop)")
    left.set_ylabel("latency, ms")
    right = left.twinx()
    right.plot(levels, [r["qps"] for r in rows], "d--", color="tab:green", label="QPS")
    right.set_ylabel("answers per second")
    right.set_ylim(0, max(r["qps"] for r in rows) * 1.2)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [str(h.get_label()) for h in handles], loc="upper left")
    left.set_title("Healthy mesh: latency and throughput against concurrency")
    left.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def hung_primary_timeline(data: dict[str, Any], path: Path) -> Path:
    """Per-second p99 and the embed stage's tier share around a hung embedder-primary."""
    plt = _pyplot()
    rows = [r for r in data["timeline"] if r["answers"]]
    seconds = [r["second"] + 0.5 for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), dpi=120, sharex=True)
    top.plot(seconds, [r["p99_ms"] for r in rows], "o-", markersize=3, label="p99 per second")
    top.set_yscale("log")
    top.set_ylabel("p99 latency, ms")
    top.grid(True, which="both", alpha=0.3)
    shares = {k: [r.get(k, 0.0) * 100 for r in rows] for k in ("tier0", "tier1", "local")}
    bottom.stackplot(
        seconds,
        shares["tier0"],
        shares["tier1"],
        shares["local"],
        labels=["embedder-primary (tier 0)", "embedder-fallback (tier 1)", "local: lexical"],
        alpha=0.8,
    )
    bottom.set_ylabel("embed served by, %")
    bottom.set_ylim(0, 100)
    bottom.set_xlabel("seconds since the start of the run")
    bottom.legend(loc="lower left", fontsize=8)
    events = data["events"]
    marks = [
        ("fault_s", "hang injected", "tab:red"),
        ("breaker_open_s", "breaker OPEN", "tab:orange"),
        ("fault_cleared_s", "fault cleared", "tab:green"),
        ("breaker_closed_s", "breaker CLOSED", "tab:blue"),
    ]
    for key, label, colour in marks:
        at = events.get(key)
        if at is None or (isinstance(at, float) and math.isnan(at)):
            continue
        for axis in (top, bottom):
            axis.axvline(at, color=colour, linestyle="--", linewidth=1)
        top.annotate(
            label,
            (at, 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color=colour,
        )
    top.set_title("embedder-primary hangs: per-second p99 and who served the embed stage")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

"""Writes benchmark results: JSON for machines, Markdown tables for people."""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

# Columns of a load run's row, in order, with their headers.
LOAD_COLUMNS = {
    "run": "run",
    "qps": "QPS",
    "p50_ms": "p50 ms",
    "p90_ms": "p90 ms",
    "p99_ms": "p99 ms",
    "max_ms": "max ms",
    "degraded_share": "degraded",
    "errors": "errors",
}


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {fmt(v)}" for k, v in value.items()) or "none"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str] | None = None
) -> str:
    columns = columns or LOAD_COLUMNS
    head = "| " + " | ".join(columns.values()) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(row.get(key, "")) for key in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_jsonable, allow_nan=True) + "\n")


def write_markdown(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = math.nan
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
    }


@dataclass
class Target:
    """One of the issue's targets, and whether this run met it."""

    name: str
    value: float
    limit: str  # as written in the issue, e.g. "<= 1.10"
    met: bool


def target_value(value: float) -> str:
    """Ratios to three decimals; milliseconds and other large values whole."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3f}"


@dataclass
class ScenarioResult:
    name: str  # file stem in bench/results/
    title: str
    table: str  # Markdown
    data: dict[str, Any]  # every number behind the table
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        parts = [f"## {self.title}", "", self.table]
        if self.targets:
            rows = [{**asdict(t), "value": target_value(t.value)} for t in self.targets]
            parts += ["", markdown_table(rows, TARGET_COLUMNS)]
        parts += ["", *(f"- {note}" for note in self.notes)] if self.notes else []
        return "\n".join(parts) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "data": self.data,
            "targets": [asdict(t) for t in self.targets],
            "notes": self.notes,
        }


TARGET_COLUMNS = {"name": "target", "value": "measured", "limit": "limit", "met": "met"}


class CpuAudit:
    """How much CPU *other* work on the machine used while a scenario ran.

    Busy CPU time from /proc/stat minus what this process and its (reaped) children used:
    every process a scenario starts is stopped and reaped before it returns, so the rest
    belongs to someone else and is noise in the numbers.
    """

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except OSError:
            fields = [0] * 8
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        own = sum(
            getattr(resource.getrusage(who), f)
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
            for f in ("ru_utime", "ru_stime")
        )
        return time.monotonic(), busy, own

    def result(self) -> dict[str, float]:
        now, busy, own = self._sample()
        wall = now - self._start[0]
        foreign = max(0.0, (busy - self._start[1]) - (own - self._start[2]))
        capacity = wall * (os.cpu_count() or 1)
        return {
            "foreign_cpu_s": round(foreign, 1),
            "foreign_share": round(foreign / capacity, 3) if capacity else 0.0,
        }

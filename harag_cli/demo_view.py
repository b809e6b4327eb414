"""How the demo looks: query receipts, health, and the summary tables; colour only on a TTY."""

from __future__ import annotations

import math
import os
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from harag.v1 import gateway_pb2
from harag_cli.demo_watch import QueryRecord
from harag_cli.render import STAGE_NAMES

CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
GOOD = ("OK", "CLOSED", "SERVING", "HEALTHY")
BAD = ("OPEN", "FORCED_OPEN", "NOT_SERVING", "UNREACHABLE", "CRITICAL")


@dataclass(frozen=True)
class Style:
    colour: bool

    @classmethod
    def for_stdout(cls) -> Style:
        # NO_COLOR (no-color.org) wins; otherwise colour only when a person is watching.
        return cls(sys.stdout.isatty() and not os.environ.get("NO_COLOR"))

    def paint(self, text: str, *styles: str) -> str:
        if not self.colour or not styles:
            return text
        return f"\033[{';'.join(CODES[s] for s in styles)}m{text}\033[0m"

    def state(self, word: str) -> str:
        """Green for healthy words, red for broken ones, yellow for in-between."""
        if word in GOOD:
            return self.paint(word, "green")
        if word in BAD:
            return self.paint(word, "red")
        return self.paint(word, "yellow")


def excerpt(text: str, width: int = 110) -> str:
    return textwrap.shorten(re.sub(r"\s+", " ", text).strip(), width=width, placeholder=" ...")


def phase_header(style: Style, number: int, title: str, explain: str) -> str:
    rule = "=" * 100
    body = textwrap.fill(explain, width=100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(
        ["", style.paint(rule, "dim"), style.paint(f"Phase {number}: {title}", "bold"), body]
    )


def breaker_line(style: Style, states: Mapping[str, str]) -> str:
    closed = sum(s == "CLOSED" for s in states.values())
    if states and closed == len(states):
        return f"breakers: all {len(states)} {style.state('CLOSED')}"
    others = [f"{name} {style.state(s)}" for name, s in states.items() if s != "CLOSED"]
    if closed:
        others.append(f"{closed} other{'s' if closed > 1 else ''} {style.state('CLOSED')}")
    return "breakers: " + ", ".join(others)


def query_block(
    style: Style,
    label: str,
    question: str,
    reply: gateway_pb2.QueryResponse,
    latency_s: float,
    breakers: Mapping[str, str],
) -> str:
    flags = []
    if reply.degraded:
        flags.append(style.paint("DEGRADED", "yellow"))
    if reply.cached:
        flags.append(style.paint("cached", "cyan"))
    if reply.HasField("retry_after"):
        flags.append(f"retry after {reply.retry_after.ToTimedelta().total_seconds():g} s")
    head = f"{style.paint(label, 'bold')} {question}  {latency_s * 1000:.0f} ms"
    lines = [head + (f"  [{', '.join(flags)}]" if flags else "")]
    for stage in reply.stages:
        local = stage.served_by.startswith("local:") or stage.served_by == "cache"
        colour = "red" if local else ("yellow" if stage.tier else "green")
        lines.append(
            f"    {STAGE_NAMES.get(stage.stage, '?'):<9}"
            f"{style.paint(f'{stage.served_by:<21}', colour)} tier {stage.tier}  "
            f"{stage.latency_ms:7.1f} ms"
        )
        for attempt in stage.attempts:
            if attempt.outcome == "OK" and not attempt.hedge and not attempt.retry:
                continue
            kind = " (retry)" if attempt.retry else (" (hedge)" if attempt.hedge else "")
            why = f": {excerpt(attempt.error, 60)}" if attempt.error else ""
            outcome = style.state(attempt.outcome) if attempt.outcome != "OK" else "OK"
            lines.append(
                style.paint(f"{'':13}attempt #{attempt.attempt} ", "dim")
                + f"{attempt.upstream} {outcome}{kind} {attempt.latency_ms:.1f} ms"
                + style.paint(why, "dim")
            )
    lines.append(f"    answer:  {excerpt(reply.answer)}")
    lines.append(f"    {breaker_line(style, breakers)}")
    return "\n".join(lines)


def failed_block(
    style: Style, label: str, question: str, code: str, detail: str, latency_s: float
) -> str:
    return (
        f"{style.paint(label, 'bold')} {question}  {latency_s * 1000:.0f} ms\n"
        f"    {style.paint(f'FAILED {code}', 'red')}: {detail}"
    )


def attempt_tally(style: Style, records: Sequence[QueryRecord]) -> str:
    """Every attempt of the phase's queries that did not succeed, by upstream and outcome."""
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        for upstream, outcome in record.attempts:
            if outcome != "OK":
                counts[(upstream, outcome)] = counts.get((upstream, outcome), 0) + 1
    if not counts:
        return f"  attempts that did not succeed, over {len(records)} queries: none"
    listed = ", ".join(
        f"{upstream} {style.state(outcome)} x{n}"
        for (upstream, outcome), n in sorted(counts.items(), key=lambda kv: -kv[1])
    )
    return f"  attempts that did not succeed, over {len(records)} queries: {listed}"


def health_block(style: Style, reply: gateway_pb2.GetSystemHealthResponse) -> str:
    status = gateway_pb2.SystemStatus.Name(reply.status).removeprefix("SYSTEM_STATUS_")
    lines = [f"  system health: {style.state(status)}"]
    for u in reply.upstreams:
        health = gateway_pb2.UpstreamHealthStatus.Name(u.health).removeprefix(
            "UPSTREAM_HEALTH_STATUS_"
        )
        state = gateway_pb2.CircuitState.Name(u.breaker.state).removeprefix("CIRCUIT_STATE_")
        failure = f"{u.breaker.failure_rate:.0f}%" if u.breaker.failure_rate >= 0 else "-"
        lines.append(
            f"    {u.name:<20} health {_pad(style.state(health), health, 12)} "
            f"breaker {_pad(style.state(state), state, 10)} failures {failure:>4} "
            f"of {u.breaker.calls_in_window:<3} last {u.last_outcome or '-'}"
        )
    return "\n".join(lines)


def _pad(painted: str, plain: str, width: int) -> str:
    return painted + " " * max(0, width - len(plain))


# -- summary -------------------------------------------------------------------------------


@dataclass
class Episode:
    """One fault on one upstream: when it was set and cleared, and what its breaker did."""

    upstream: str
    phase: int
    fault: str
    set_at: float
    cleared_at: float | None = None
    opened_after_s: float | None = None
    closed_after_s: float | None = None
    skipped: bool = False  # the gateway skipped it as NOT_SERVING (health check), no calls


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered), max(1, math.ceil(0.99 * len(ordered)))) - 1]


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], paint: Callable[[int, str], str]
) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = ["  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  " + "  ".join("-" * w for w in widths))
    for row in rows:
        cells = [
            paint(i, cell) + " " * (w - len(cell))
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append(("  " + "  ".join(cells)).rstrip())
    return "\n".join(out)


def phase_rows(titles: Mapping[int, str], records: Sequence[QueryRecord]) -> list[list[str]]:
    rows = []
    for number, title in titles.items():
        inside = [r for r in records if r.phase == number]
        ok = [r for r in inside if r.ok]
        served = [s for r in ok for s in r.served]
        share = {
            "primary": sum(1 for t, local in served if not local and t == 0),
            "fallback": sum(1 for t, local in served if not local and t > 0),
            "last resort": sum(1 for _, local in served if local),
        }
        latencies = [r.latency_s * 1000 for r in ok]
        mean = sum(latencies) / len(latencies) if latencies else math.nan
        rows.append(
            [
                f"{number} {title[:38]}",
                f"{len(ok)}/{len(inside)}",
                *(f"{share[k] / len(served):.0%}" if served else "-" for k in share),
                f"{mean:.0f}",
                f"{p99(latencies):.0f}",
            ]
        )
    return rows


def episode_rows(episodes: Sequence[Episode]) -> list[list[str]]:
    rows = []
    for e in episodes:
        if e.opened_after_s is not None:
            opened = f"{e.opened_after_s:.2f} s"
        elif e.skipped:
            opened = "not needed: skipped as NOT_SERVING"
        else:
            opened = "stayed CLOSED"
        if e.closed_after_s is not None:
            closed = f"{e.closed_after_s:.2f} s"
        elif e.opened_after_s is not None:
            closed = "still not CLOSED"
        else:
            closed = "-"
        rows.append([e.upstream, f"{e.fault} (phase {e.phase})", opened, closed])
    return rows


def summary(
    style: Style,
    titles: Mapping[int, str],
    records: Sequence[QueryRecord],
    episodes: Sequence[Episode],
) -> str:
    def paint_phase(column: int, cell: str) -> str:
        if column == 1 and "/" in cell:
            done, total = cell.split("/")
            return style.paint(cell, "green" if done == total else "red")
        return cell

    def paint_episode(column: int, cell: str) -> str:
        if column == 2 and cell.endswith(" s"):
            return style.paint(cell, "yellow")
        if column == 3 and cell.endswith(" s"):
            return style.paint(cell, "green")
        return style.paint(cell, "red") if "still" in cell else cell

    phase_table = table(
        ["phase", "answered", "primary", "fallback", "last resort", "mean ms", "p99 ms"],
        phase_rows(titles, records),
        paint_phase,
    )
    lines = [
        "",
        style.paint("Summary", "bold"),
        "  Every query of each phase, foreground and background; 'primary', 'fallback' and",
        "  'last resort' are the shares of stages served by tier 0, a later tier, or the",
        "  gateway itself (local lexical search, empty context, stale cache, static answer).",
        "",
        phase_table,
    ]
    if episodes:
        lines += [
            "",
            style.paint("Breakers", "bold"),
            table(
                ["upstream", "fault", "fault -> breaker OPEN", "fault cleared -> breaker CLOSED"],
                episode_rows(episodes),
                paint_episode,
            ),
        ]
    return "\n".join(lines)

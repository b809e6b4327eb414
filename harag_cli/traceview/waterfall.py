"""Terminal rendering: a trace as a waterfall tree, and the list of recent traces.

Each span is one line: service, tree + span name, a duration bar on the trace's time
scale, duration, status and the key attributes (`harag.` dropped); span events (breaker
transitions) follow their span as `@ <offset>` lines, error messages as `!` lines.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from harag_cli.traceview.store import SpanRecord, roots_of

# Attributes worth a glance in the tree; `harag.` is dropped from the shown name.
KEY_ATTRIBUTES = (
    "harag.request_id",
    "harag.degraded",
    "harag.cached",
    "harag.embed.served_by",  # on the request span, shown for a degraded stage only
    "harag.retrieve.served_by",
    "harag.generate.served_by",
    "harag.served_by",  # stage spans, in traces from before they were dropped
    "harag.upstream",  # an attempt (the gateway's CLIENT span, or `attempt <upstream>`)
    "harag.tier",
    "harag.attempt",
    "harag.outcome",
    "harag.breaker.state",
    "harag.retry",
    "harag.hedge",
    "harag.error",
    "harag.model",
    "harag.batch_size",
    "harag.top_k",
    "harag.index_size",
    "harag.hits",
    "harag.retrieval.mode",
    "harag.context_docs",
    "harag.finish_reason",
    "rpc.grpc.status_code",
)
STAGE_SERVED_BY = {  # served_by -> degraded, per stage, on the request span
    f"harag.{stage}.served_by": f"harag.{stage}.degraded"
    for stage in ("embed", "retrieve", "generate")
}
FALSE_IS_NOISE = {"harag.retry", "harag.hedge", "harag.cached", "harag.degraded"}


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms"


def _attrs(span: SpanRecord) -> str:
    shown = []
    for key in KEY_ATTRIBUTES:
        if key not in span.attributes:
            continue
        value = span.attributes[key]
        if value is False and key in FALSE_IS_NOISE:
            continue
        if key == "rpc.grpc.status_code" and value == 0:
            continue
        if key in STAGE_SERVED_BY and not span.attributes.get(STAGE_SERVED_BY[key]):
            continue  # a stage served as usual: nothing to glance at
        if isinstance(value, bool):
            value = str(value).lower()
        shown.append(f"{key.removeprefix('harag.')}={value}")
    return " ".join(shown)


def _bar(span: SpanRecord, t0: int, total: int, width: int) -> str:
    if total <= 0:
        return "█".ljust(width)
    offset = min(width - 1, int((span.start_ns - t0) / total * width))
    length = round(span.duration_ns / total * width)
    body = "█" * length if length >= 1 else "▏"
    return (" " * offset + body)[:width].ljust(width)


def _tree(spans: list[SpanRecord]) -> list[tuple[str, SpanRecord]]:
    """(tree prefix, span) in display order: depth first, children by start time."""
    children: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        children[span.parent_id].append(span)
    for kids in children.values():
        kids.sort(key=lambda s: s.start_ns)
    out: list[tuple[str, SpanRecord]] = []

    def walk(span: SpanRecord, prefix: str, branch: str) -> None:
        out.append((prefix + branch, span))
        kids = children.get(span.span_id, [])
        deeper = prefix + ("" if not branch else ("   " if branch == "└─ " else "│  "))
        for i, kid in enumerate(kids):
            walk(kid, deeper, "└─ " if i == len(kids) - 1 else "├─ ")

    for root in roots_of(spans):
        walk(root, "", "")
    return out


def render_trace(spans: list[SpanRecord], width: int = 120) -> str:
    """The waterfall: one line per span (plus one per span event), bars on a shared scale."""
    if not spans:
        return "(no spans)"
    t0 = min(s.start_ns for s in spans)
    total = max(s.end_ns for s in spans) - t0
    rows = _tree(spans)
    service_w = max(len("SERVICE"), *(len(s.service) for _, s in rows))
    name_w = min(60, max(len("SPAN"), *(len(p) + len(s.name) for p, s in rows)))
    bar_w = max(10, min(40, width - service_w - name_w - 30))
    services = sorted({s.service for s in spans})
    errors = sum(1 for s in spans if s.status == "ERROR")
    head = [
        f"trace {spans[0].trace_id}  {_ms(total)}  {len(spans)} spans  "
        f"{len(services)} services  {errors} errors",
        f"{'SERVICE':<{service_w}}  {'SPAN':<{name_w}}  "
        f"{('0 ms').ljust(bar_w - len(_ms(total)))}{_ms(total)}",
    ]
    lines = []
    for prefix, span in rows:
        name = (prefix + span.name)[:name_w]
        status = "ERROR" if span.status == "ERROR" else ("OK" if span.status == "OK" else "")
        lines.append(
            f"{span.service:<{service_w}}  {name:<{name_w}}  {_bar(span, t0, total, bar_w)}  "
            f"{_ms(span.duration_ns):>9}  {status:<5}  {_attrs(span)}".rstrip()
        )
        indent = " " * (service_w + name_w + 4)
        if span.status == "ERROR" and span.status_message and "harag.error" not in span.attributes:
            lines.append(f"{indent}! {span.status_message}")
        for event in span.events:
            detail = " ".join(
                f"{k.removeprefix('harag.')}={v}" for k, v in event.attributes.items()
            )
            lines.append(f"{indent}@ {_ms(event.time_ns - t0)}  {event.name} {detail}".rstrip())
    return "\n".join(head + lines)


def render_list(summaries: list[dict[str, Any]]) -> str:
    """`harag traces`: one line per trace, newest first."""
    if not summaries:
        return "no traces yet (send a query, then wait a second for the exporters to flush)"
    lines = [f"{'TRACE ID':<32}  {'STARTED':<8}  {'DURATION':>10}  SPANS  ERR  ROOT"]
    for s in summaries:
        started = time.strftime("%H:%M:%S", time.localtime(s["start_ns"] / 1e9))
        flags = " DEGRADED" if s.get("degraded") else ""
        lines.append(
            f"{s['trace_id']:<32}  {started:<8}  {_ms(s['duration_ns']):>10}  {s['spans']:>5}  "
            f"{s['errors']:>3}  {s['root_service']} {s['root_name']}{flags}"
        )
    return "\n".join(lines)

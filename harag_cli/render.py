"""Human-readable output for the CLI: answers, the stage receipt, health tables, errors."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harag.errors import HaragError
from harag.types import FinalEvent, Withdrawn, model_usage
from harag.v1 import admin_pb2, common_pb2, gateway_pb2
from harag_cli.meshctl import state_name

if TYPE_CHECKING:
    from harag_cli.documents import Collected
    from harag_cli.ingesting import IngestReport

STAGE_NAMES = {
    gateway_pb2.STAGE_EMBED: "embed",
    gateway_pb2.STAGE_RETRIEVE: "retrieve",
    gateway_pb2.STAGE_GENERATE: "generate",
}


def circuit(state: int) -> str:
    return state_name(state) if state else "-"


def receipt(stages: list[gateway_pb2.StageReport]) -> list[str]:
    lines = []
    for s in stages:
        name = STAGE_NAMES.get(s.stage, "?")
        mark = "DEGRADED" if s.degraded else "ok"
        lines.append(
            f"  {name:<9} {s.served_by:<22} tier {s.tier}  {s.latency_ms:7.1f} ms  {mark}"
            + (f"  ({s.detail})" if s.detail else "")
        )
        for a in s.attempts:
            if a.outcome == "OK" and len(s.attempts) == 1:
                continue
            flags = "".join([" retry" if a.retry else "", " hedge" if a.hedge else ""])
            err = f": {a.error}" if a.error else ""
            lines.append(
                f"      #{a.attempt} {a.upstream:<20} {a.outcome:<18} "
                f"{a.latency_ms:7.1f} ms{flags}{err}"[:160]
            )
    for used in model_usage(stages):
        lines.append(
            f"  tokens    {used.model}: {used.prompt_tokens} prompt + "
            f"{used.completion_tokens} completion tokens"
            + (f" ({used.calls} calls)" if used.calls > 1 else "")
        )
    return lines


def answer(reply: gateway_pb2.QueryResponse) -> str:
    out = [textwrap.fill(reply.answer, width=100), "", "Sources:"]
    out += [source(s) for s in reply.sources]
    flags = []
    if reply.degraded:
        flags.append("DEGRADED")
    if reply.cached:
        flags.append("cached")
    if reply.HasField("retry_after"):
        flags.append(f"retry after {reply.retry_after.ToTimedelta().total_seconds():g}s")
    out += [
        "",
        "Stages" + (f" ({', '.join(flags)})" if flags else "") + ":",
        *receipt(list(reply.stages)),
    ]
    out.append(
        f"request_id {reply.request_id}"
        + (f"  trace_id {reply.trace_id}" if reply.trace_id else "")
    )
    return "\n".join(out)


SECTION_SEPARATOR = " \u203a "  # as the gateway joins a chunk's headings


def source(s: gateway_pb2.Source) -> str:
    """`[1] Deploy guide > Kubernetes > Probes (p. 3)  deploy.md#7  score=0.812` (with the
    gateway's separator): the document's title, the section the passage sits in and its page
    when the gateway names them, then the chunk's id (or the document's)."""
    title = s.metadata.get("title", "")
    section = s.metadata.get("section", "")
    parts = section.split(SECTION_SEPARATOR) if section else []
    if parts and parts[0] == title:  # the document's first heading is usually its title
        parts = parts[1:]
    where = SECTION_SEPARATOR.join(p for p in (title, *parts) if p)
    page = s.metadata.get("page", "")
    if page and page != "0":
        where += f" (p. {page})"
    shown_id = s.metadata.get("chunk_id") or s.id
    return f"  [{s.citation}] {where or s.id}  {shown_id}  score={s.score:.3f}"


def withdrawn(event: Withdrawn) -> str:
    """The marker `harag stream` prints when the answer so far is withdrawn; the answer
    restarts on the next line."""
    return (
        f"[answer withdrawn: {event.upstream} (tier {event.tier}) failed mid-stream after "
        f"{event.withdrawn_chars} characters: {event.reason}; restarting with the next tier]"
    )


def stream_end(sources: Sequence[gateway_pb2.Source], final: FinalEvent) -> str:
    """What `harag stream` prints after the answer: sources, then the receipt."""
    flags = ["DEGRADED"] if final.degraded else []
    if final.cached:
        flags.append("cached")
    if final.retry_after_s is not None:
        flags.append(f"retry after {final.retry_after_s:g}s")
    out = ["Sources:", *[source(s) for s in sources], ""]
    out.append("Stages" + (f" ({', '.join(flags)})" if flags else "") + ":")
    out += receipt(list(final.stages))
    trace = f"  trace_id {final.trace_id}" if final.trace_id else ""
    out.append(f"request_id {final.request_id}{trace}")
    return "\n".join(out)


def ingest_summary(collected: Collected, report: IngestReport) -> str:
    """The table `harag ingest` ends with."""
    failed: Counter[str] = Counter(f.reason.split(" (", 1)[0] for f in collected.failures)
    failed.update(report.failed_by_reason)
    skipped = collected.skipped_by_reason()
    rows = [
        ("documents stored", str(report.stored)),
        ("chunks stored", str(report.chunks)),
        ("unchanged (skipped)", str(report.unchanged)),
        ("failed", str(sum(failed.values()))),
        *[(f"  {reason}", str(n)) for reason, n in failed.most_common()],
    ]
    if report.partial:
        rows.insert(1, ("  of which partial", str(report.partial)))
    if report.queued:
        rows.insert(1, ("  of which queued (a retriever is behind)", str(report.queued)))
    if skipped:
        rows.append(("not documents (skipped)", str(sum(skipped.values()))))
        rows += [(f"  {reason}", str(n)) for reason, n in sorted(skipped.items())]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value:>6}" for label, value in rows)


def documents(stored: Sequence[common_pb2.StoredDocument]) -> str:
    """`harag docs list`: one line per document."""
    if not stored:
        return "no documents stored"
    width = min(60, max(len(d.document_id) for d in stored))
    out = [f"  {'id':<{width}} {'chunks':>6}  title"]
    out += [f"  {d.document_id:<{width}} {d.chunks:>6}  {d.title}" for d in stored]
    out.append(f"{len(stored)} documents, {sum(d.chunks for d in stored)} chunks")
    return "\n".join(out)


def deleted(reply: gateway_pb2.DeleteDocumentsResponse) -> str:
    """`harag docs delete`: each id's outcome, then the cached answers evicted."""
    out = []
    for r in reply.results:
        if r.found:
            line = f"deleted {r.id}"
        else:
            line = f"not found: {r.id}"
        if r.missing:
            line += f" (could not reach {', '.join(r.missing)}; it may remain there)"
        out.append(line)
    out.append(f"{reply.evicted_answers} cached answers evicted")
    return "\n".join(out)


def health(reply: gateway_pb2.GetSystemHealthResponse) -> str:
    status = gateway_pb2.SystemStatus.Name(reply.status).removeprefix("SYSTEM_STATUS_")
    out = [
        f"system: {status}   uptime {reply.uptime.ToTimedelta()}   version {reply.version}",
        "",
        f"  {'upstream':<20} {'tier':<4} {'address':<22} {'health':<12} {'breaker':<11} "
        f"{'rejected':>8} {'last':<18} {'ms':>7}",
    ]
    for u in reply.upstreams:
        h = gateway_pb2.UpstreamHealthStatus.Name(u.health).removeprefix("UPSTREAM_HEALTH_STATUS_")
        b = circuit(u.breaker.state) if u.HasField("breaker") else "-"
        rejected = str(u.breaker.rejected_calls) if u.HasField("breaker") else "-"
        out.append(
            f"  {u.name:<20} {u.tier:<4} {u.address:<22} {h:<12} {b:<11} {rejected:>8} "
            f"{u.last_outcome or '-':<18} {u.last_latency_ms:7.1f}"
        )
    out += recent_calls(list(reply.upstreams))
    out += degraded_reasons(list(reply.upstreams))
    out += retries(list(reply.upstreams))
    return "\n".join(out)


def recent_calls(upstreams: list[gateway_pb2.UpstreamStatus]) -> list[str]:
    """What callers met lately: slow and failed shares, hedge races, the oldest call waiting."""
    shown = [u for u in upstreams if u.HasField("slow_call_threshold")]
    if not shown:
        return []
    out = [
        "",
        "  recent calls (status window), hedge races since start-up, oldest call in flight",
        f"  {'upstream':<20} {'slow %':>7} {'fail %':>7} {'won':>6} {'lost':>6} "
        f"{'oldest ms':>10} {'slow past ms':>13}",
    ]
    for u in shown:
        oldest = u.oldest_in_flight.ToTimedelta().total_seconds() * 1000
        threshold = u.slow_call_threshold.ToTimedelta().total_seconds() * 1000
        out.append(
            f"  {u.name:<20} {u.recent_slow_call_rate:7.1f} {u.recent_failure_rate:7.1f} "
            f"{u.hedges_won:>6} {u.hedges_lost:>6} {oldest:10.0f} {threshold:13.0f}"
        )
    return out


def degraded_reasons(upstreams: list[gateway_pb2.UpstreamStatus]) -> list[str]:
    """Why each upstream degrades the system, one line per reason."""
    lines = [
        f"  {u.name:<20} {r.reason}: {r.detail}" for u in upstreams for r in u.degraded_reasons
    ]
    return ["", "  why degraded", *lines] if lines else []


def retries(upstreams: list[gateway_pb2.UpstreamStatus]) -> list[str]:
    """Retry budget use (in its rolling window) and retry decisions (since start-up)."""
    shown = [u for u in upstreams if u.HasField("retry_budget") or u.retry_decisions]
    if not shown:
        return []
    out = [
        "",
        "  retries: budget spent/allowed in its window, refused and decisions since start-up",
        f"  {'upstream':<20} {'budget':>12} {'refused':>8}  decisions",
    ]
    for u in shown:
        budget, refused = "-", "-"
        if u.HasField("retry_budget"):
            budget = f"{u.retry_budget.spent}/{u.retry_budget.allowance:g}"
            refused = str(u.retry_budget.rejected)
        decisions = " ".join(f"{d.reason}={d.count}" for d in u.retry_decisions) or "-"
        out.append(f"  {u.name:<20} {budget:>12} {refused:>8}  {decisions}")
    return out


def _rate(percent: float) -> str:
    """A breaker's failure or slow-call rate; negative until it has seen enough calls."""
    return "-" if percent < 0 else f"{percent:.1f}"


def breakers(entries: Sequence[admin_pb2.UpstreamBreaker]) -> str:
    """`harag breakers`: one line per upstream breaker."""
    out = [
        f"  {'upstream':<20} {'state':<12} {'fail %':>7} {'slow %':>7} {'calls':>6} "
        f"{'in state':>10} {'trips':>6} {'rejected':>8}  next probe"
    ]
    for entry in entries:
        b = entry.breaker
        probe = (
            b.next_probe_time.ToDatetime().strftime("%H:%M:%S.%f")[:-3]
            if b.HasField("next_probe_time")
            else "-"
        )
        out.append(
            f"  {entry.upstream:<20} {circuit(b.state):<12} {_rate(b.failure_rate):>7} "
            f"{_rate(b.slow_call_rate):>7} {b.calls_in_window:>6} "
            f"{b.time_in_state.ToTimedelta().total_seconds():>9.1f}s "
            f"{b.consecutive_trips:>6} {b.rejected_calls:>8}  {probe}"
        )
    return "\n".join(out)


def error(command: str, failure: HaragError, hint: str = "") -> str:
    """One line for a failed call: the status code, the server's message, every bad field it
    named that the message does not already, when to retry, and its stable reason.

    e.g. `harag query: INVALID_ARGUMENT: top_k: must be within 1..50`, or
    `harag query: RESOURCE_EXHAUSTED: gateway at capacity (retry in 0.25 s; reason ADMISSION_SHED)`.
    """
    said = [failure.message] if failure.message else []
    said += [
        f"{v.field}: {v.description}"
        for v in failure.field_violations
        if f"{v.field}: {v.description}" not in failure.message
    ]
    extras = []
    if failure.retry_delay_s is not None:
        extras.append(f"retry in {failure.retry_delay_s:g} s")
    if failure.reason and failure.reason != failure.code.name:
        extras.append(f"reason {failure.reason}")
    if hint:
        extras.append(hint)
    # grpcio's own messages may span lines; the error stays on one.
    text = " ".join("; ".join(said).split())
    return (
        f"harag {command}: {failure.code.name}"
        + (f": {text}" if text else "")
        + (f" ({'; '.join(extras)})" if extras else "")
    )

"""Recent traces in memory: OTLP spans decoded into plain records, grouped by trace id.

Bounded: the least recently updated trace is dropped past `max_traces`, and a trace keeps
at most `max_spans_per_trace` spans, so a long-running `harag up` cannot grow without end.
Thread-safe: the OTLP receiver writes from the event loop, the query API reads from threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

KINDS = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
STATUSES = {
    trace_pb2.Status.STATUS_CODE_UNSET: "UNSET",
    trace_pb2.Status.STATUS_CODE_OK: "OK",
    trace_pb2.Status.STATUS_CODE_ERROR: "ERROR",
}


@dataclass
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class SpanRecord:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str  # "" for a root span
    name: str
    service: str
    kind: str
    start_ns: int
    end_ns: int
    status: str  # UNSET | OK | ERROR
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpanRecord:
        events = [SpanEvent(**e) for e in data.get("events", [])]
        return cls(**{**data, "events": events})


def any_value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def _attributes(pairs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> list[SpanRecord]:
    """Flattens an OTLP export request into span records, each naming its service."""
    records = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", "unknown_service"))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(
                    SpanRecord(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        name=span.name,
                        service=service,
                        kind=KINDS.get(span.kind, "UNSPECIFIED"),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status=STATUSES.get(span.status.code, "UNSET"),
                        status_message=span.status.message,
                        attributes=_attributes(span.attributes),
                        events=[
                            SpanEvent(e.name, e.time_unix_nano, _attributes(e.attributes))
                            for e in span.events
                        ],
                    )
                )
    return records


def roots_of(spans: list[SpanRecord]) -> list[SpanRecord]:
    """Spans whose parent is not in the trace (yet), earliest first."""
    ids = {s.span_id for s in spans}
    return sorted((s for s in spans if s.parent_id not in ids), key=lambda s: s.start_ns)


def summary(trace_id: str, spans: list[SpanRecord]) -> dict[str, Any]:
    roots = roots_of(spans)
    root = roots[0] if roots else min(spans, key=lambda s: s.start_ns)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    return {
        "trace_id": trace_id,
        "root_service": root.service,
        "root_name": root.name,
        "start_ns": start,
        "duration_ns": max(0, end - start),
        "spans": len(spans),
        "services": sorted({s.service for s in spans}),
        "errors": sum(1 for s in spans if s.status == "ERROR"),
        "degraded": bool(root.attributes.get("harag.degraded", False)),
    }


class AmbiguousTraceId(LookupError):
    """A trace id prefix that matches more than one trace."""


class TraceStore:
    def __init__(self, max_traces: int = 2000, max_spans_per_trace: int = 5000) -> None:
        self.max_traces = max_traces
        self.max_spans_per_trace = max_spans_per_trace
        self._traces: OrderedDict[str, list[SpanRecord]] = OrderedDict()
        self._lock = threading.Lock()
        self.received_spans = 0

    def add(self, spans: Iterable[SpanRecord]) -> None:
        with self._lock:
            for span in spans:
                self.received_spans += 1
                bucket = self._traces.setdefault(span.trace_id, [])
                if len(bucket) < self.max_spans_per_trace:
                    bucket.append(span)
                self._traces.move_to_end(span.trace_id)
            while len(self._traces) > self.max_traces:
                self._traces.popitem(last=False)

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """Summaries of the most recently started traces, newest first."""
        with self._lock:
            snapshot = [(tid, list(spans)) for tid, spans in self._traces.items()]
        summaries = [summary(tid, spans) for tid, spans in snapshot if spans]
        summaries.sort(key=lambda s: s["start_ns"], reverse=True)
        return summaries[: max(0, limit)]

    def get(self, trace_id: str) -> list[SpanRecord] | None:
        """The trace's spans; `trace_id` may be a unique prefix (like a short git hash)."""
        wanted = trace_id.strip().lower()
        with self._lock:
            if wanted in self._traces:
                return list(self._traces[wanted])
            matches = [tid for tid in self._traces if wanted and tid.startswith(wanted)]
            if len(matches) > 1:
                raise AmbiguousTraceId(f"{trace_id!r} matches {len(matches)} traces")
            return list(self._traces[matches[0]]) if matches else None

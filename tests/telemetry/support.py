"""Helpers for the telemetry tests: unique queries, waiting for traces, walking span trees."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc

from harag.v1 import admin_pb2, admin_pb2_grpc
from harag_cli.meshctl import admin_address
from harag_cli.traceview.store import SpanRecord, TraceStore


def unique_question() -> str:
    """A question no earlier test asked, so no cache or coalescing can answer it."""
    return f"How does a circuit breaker decide to open? ({uuid.uuid4().hex[:8]})"


async def wait_for_trace(
    store: TraceStore,
    trace_id: str,
    ready: Callable[[list[SpanRecord]], bool],
    timeout_s: float = 5.0,
) -> list[SpanRecord]:
    """Polls the receiver until the trace satisfies `ready`; fails with what did arrive."""
    end = time.monotonic() + timeout_s
    spans: list[SpanRecord] = []
    while time.monotonic() < end:
        spans = store.get(trace_id) or []
        if spans and ready(spans):
            return spans
        await asyncio.sleep(0.05)
    shown = "\n".join(f"  {s.service} {s.kind} {s.name} {s.attributes}" for s in spans)
    raise AssertionError(f"trace {trace_id} incomplete after {timeout_s}s; got:\n{shown}")


def server_spans(spans: list[SpanRecord], service: str) -> list[SpanRecord]:
    return [s for s in spans if s.service == service and s.kind == "SERVER"]


def has_server_spans(*services: str) -> Callable[[list[SpanRecord]], bool]:
    return lambda spans: all(server_spans(spans, service) for service in services)


def ancestors(span: SpanRecord, spans: list[SpanRecord]) -> list[SpanRecord]:
    """Parent, grandparent, ... up to the root, as far as the trace has them."""
    by_id = {s.span_id: s for s in spans}
    chain = []
    current = by_id.get(span.parent_id)
    while current is not None:
        chain.append(current)
        current = by_id.get(current.parent_id)
    return chain


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus /metrics endpoint, keyed by (name, labels)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def metrics_address(logs: list[dict]) -> str:
    """The /metrics URL a process logged at its latest start-up (an earlier process of the
    same name, such as a previous extra gateway, may have logged another)."""
    for line in reversed(logs):
        if line.get("msg") == "metrics endpoint":
            return line["metrics_address"]
    raise AssertionError("the process never logged its metrics endpoint")


@asynccontextmanager
async def breaker_forced_open(mesh, upstream: str) -> AsyncIterator[None]:
    async with grpc.aio.insecure_channel(admin_address(mesh.gateway_address)) as channel:
        admin = admin_pb2_grpc.GatewayAdminServiceStub(channel)
        await admin.TransitionBreaker(
            admin_pb2.TransitionBreakerRequest(
                upstream=upstream, action=admin_pb2.BREAKER_ACTION_FORCE_OPEN
            ),
            timeout=5,
        )
        try:
            yield
        finally:
            await admin.TransitionBreaker(
                admin_pb2.TransitionBreakerRequest(
                    upstream=upstream, action=admin_pb2.BREAKER_ACTION_RESET
                ),
                timeout=5,
            )

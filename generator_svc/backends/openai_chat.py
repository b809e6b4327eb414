"""An OpenAI-compatible chat model (`POST {base_url}/chat/completions`, streamed) as a backend.

Works with OpenAI, vLLM, Ollama, LiteLLM's proxy, TGI and anything else that speaks the
chat-completions wire format with `stream: true`. The prompt numbers the context passages
and asks for [n] citations; the context is trimmed to a token budget estimated from its
characters (no tokenizer is downloaded).

Server-sent events are parsed line by line: `data:` lines carry one JSON chunk each, `[DONE]`
ends the stream, an `{"error": ...}` object inside a 200 stream is a failure, and a stream
that ends without `[DONE]` is an error, never a silently short answer.

Errors are mapped by HTTP status and `error.code` / `error.type`, never by message text:

| upstream                                   | gRPC status         | ErrorInfo reason           |
| ------------------------------------------ | ------------------- | -------------------------- |
| connection refused/reset, 5xx, 408, 409    | UNAVAILABLE         | PROVIDER_UNAVAILABLE       |
| 429 or 503 with Retry-After                | RESOURCE_EXHAUSTED  | PROVIDER_RATE_LIMITED      |
|   (+ RetryInfo with the Retry-After delay) |                     |                            |
| 429 `insufficient_quota`                   | FAILED_PRECONDITION | PROVIDER_QUOTA             |
| 401, 403                                   | FAILED_PRECONDITION | PROVIDER_AUTH              |
| 404 (unknown model)                        | FAILED_PRECONDITION | PROVIDER_MODEL_NOT_FOUND   |
| 400, 413, 422 (our request)                | INVALID_ARGUMENT    | PROVIDER_REJECTED_REQUEST  |
| error object inside a 200 stream          | UNAVAILABLE         | PROVIDER_STREAM_ERROR      |
| stream cut without `[DONE]`, bad chunk     | UNAVAILABLE         | PROVIDER_STREAM_CUT        |
| no first token / idle gap too long         | UNAVAILABLE         | PROVIDER_TIMEOUT           |
| the caller's deadline runs out             | DEADLINE_EXCEEDED   | DEADLINE_EXCEEDED          |
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import httpx
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from generator_svc.backends import NO_CONTEXT_TEXT, Answer, Finish
from generator_svc.backends.citing import source_list
from generator_svc.backends.streaming import Delta, Event, Final, GenerationError, Usage
from harag.v1 import common_pb2
from servicekit import errors

# A rough, tokenizer-free estimate: English text averages about 4 characters per token.
CHARS_PER_TOKEN = 4
T = TypeVar("T")
_CITATION = re.compile(r"\[(\d+)\]")

SYSTEM_PROMPT = (
    "You answer questions using only the numbered context passages the user gives. "
    "Cite the passages you use as [n], where n is the passage number, right after the "
    "statement they support. If the passages do not contain the answer, say that you "
    "could not find it in the indexed documents."
)


@dataclass(frozen=True)
class ChatSettings:
    base_url: str
    model: str
    api_key: str = ""  # never logged
    max_tokens: int = 512
    temperature: float = 0.2
    context_tokens: int = 3000
    first_token_timeout_s: float = 20.0
    idle_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def build_messages(
    query: str, documents: Sequence[common_pb2.Document], context_tokens: int
) -> tuple[list[dict[str, str]], int]:
    """The chat messages, and how many context passages fit the token budget (best first).

    A passage that does not fit whole is cut to the room left (at least one passage is sent,
    cut if needed), and every later passage is left out.
    """
    room = context_tokens * CHARS_PER_TOKEN
    passages: list[str] = []
    for n, document in enumerate(documents, start=1):
        if room <= 0:
            break
        text = document.text.strip()
        if len(text) > room:
            cut = text[:room]
            passages.append(f"[{n}] {cut.rsplit(' ', 1)[0] if ' ' in cut else cut}")
            break
        passages.append(f"[{n}] {text}")
        room -= len(text)
    context = "\n\n".join(passages)
    user = f"Context passages:\n\n{context}\n\nQuestion: {query}"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user},
    ], len(passages)


def citations_of(text: str, count: int) -> tuple[int, ...]:
    """[n] citations of the text that name one of `count` passages, in order of first use."""
    seen: list[int] = []
    for match in _CITATION.finditer(text):
        n = int(match.group(1))
        if 1 <= n <= count and n not in seen:
            seen.append(n)
    return tuple(seen)


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_fields(body: Any) -> tuple[str, str, str]:
    """(code, type, message) from OpenAI's {"error": {...}}, vLLM's integer codes, TEI's flat
    {"error": "...", "error_type": "..."}, or anything else (empty strings)."""
    if not isinstance(body, dict):
        return "", "", ""
    error = body.get("error", body)
    if isinstance(error, dict):
        code = error.get("code")
        return (
            "" if code is None else str(code),
            str(error.get("type") or ""),
            str(error.get("message") or ""),
        )
    return "", str(body.get("error_type") or ""), str(error)


def status_error(status: int, headers: httpx.Headers, body: Any) -> GenerationError:
    """The GenerationError for a non-2xx answer (see the module's table)."""
    code, kind, message = _error_fields(body)
    where = f"model provider answered HTTP {status}" + (f": {message}" if message else "")
    wait = retry_after_s(headers.get("retry-after"))
    if status == 429 and "insufficient_quota" in (code, kind):
        return GenerationError(errors.failed_precondition(where, "PROVIDER_QUOTA"))
    if status in (429, 503) and wait is not None:
        return GenerationError(errors.resource_exhausted(where, wait, "PROVIDER_RATE_LIMITED"))
    if status in (401, 403):
        return GenerationError(errors.failed_precondition(where, "PROVIDER_AUTH"))
    if status == 404:
        return GenerationError(errors.failed_precondition(where, "PROVIDER_MODEL_NOT_FOUND"))
    if status in (400, 413, 422):
        return GenerationError(
            _status(code_pb2.INVALID_ARGUMENT, where, "PROVIDER_REJECTED_REQUEST")
        )
    # 5xx, 408, 409, a 429 with no Retry-After, and anything unexpected: try elsewhere.
    return GenerationError(_status(code_pb2.UNAVAILABLE, where, "PROVIDER_UNAVAILABLE"))


def _status(code: int, message: str, reason: str) -> grpc.Status:
    """A status with an ErrorInfo of `reason` in the harag.v1 domain."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=errors.ERROR_DOMAIN))
    status: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=[info])
    )
    return status


def unavailable(message: str, reason: str) -> GenerationError:
    return GenerationError(_status(code_pb2.UNAVAILABLE, message, reason))


class OpenAIChatGenerator:
    """Streams answers from an OpenAI-compatible chat-completions endpoint."""

    def __init__(self, settings: ChatSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        headers = {"Accept": "text/event-stream"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.client = client or httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(None, connect=settings.connect_timeout_s),
        )

    @property
    def model(self) -> str:
        return self.settings.model

    async def aclose(self) -> None:
        await self.client.aclose()

    def __repr__(self) -> str:  # never shows the API key
        return f"OpenAIChatGenerator(base_url={self.settings.base_url!r}, model={self.model!r})"

    async def stream(
        self,
        query: str,
        documents: Sequence[common_pb2.Document],
        max_answer_chars: int,
        budget_s: float | None,
    ) -> AsyncIterator[Event]:
        if not documents:
            text = NO_CONTEXT_TEXT[:max_answer_chars]
            yield Delta(text)
            yield Final(Answer(text, Finish.NO_CONTEXT, ()))
            return
        s = self.settings
        messages, sent = build_messages(query, documents, s.context_tokens)
        payload = {
            "model": s.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max(1, min(s.max_tokens, estimate_tokens("x" * max_answer_chars) + 1)),
            "temperature": s.temperature,
        }
        deadline = None if budget_s is None else time.monotonic() + budget_s
        text = ""
        finish = Finish.STOP
        usage: Usage | None = None
        async with contextlib.aclosing(self._chunks(payload, deadline)) as items:
            async for item in items:
                if isinstance(item, Usage):
                    usage = item
                    continue
                piece, reason = item
                if reason == "length":
                    finish = Finish.LENGTH
                room = max_answer_chars - len(text)
                if len(piece) > room:
                    piece, finish = piece[:room], Finish.LENGTH
                if piece:
                    text += piece
                    yield Delta(piece)
                if finish is Finish.LENGTH and len(text) >= max_answer_chars:
                    break
        citations = citations_of(text, sent)
        answer = Answer(text, finish, citations)
        footer = source_list(answer, documents)
        if footer and len(text) + len(footer) <= max_answer_chars:
            yield Delta(footer)
            answer = Answer(text + footer, finish, citations)
        yield Final(answer, usage)

    async def _chunks(
        self, payload: dict[str, Any], deadline: float | None
    ) -> AsyncGenerator[tuple[str, str | None] | Usage, None]:
        """(content delta, finish_reason) per chunk and the Usage chunk, until [DONE].

        The response and its first content token must come within first_token_timeout_s of
        the call; each later token within idle_timeout_s of the one before; all of it within
        the caller's deadline.
        """
        s = self.settings
        started = time.monotonic()
        first_by = started + s.first_token_timeout_s
        try:
            request = self.client.build_request("POST", "chat/completions", json=payload)
            response = await self._read(
                self.client.send(request, stream=True), first_by, deadline, "first token"
            )
            try:
                if response.status_code >= 300:
                    raw = await self._read(response.aread(), first_by, deadline, "error body")
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = None
                    raise status_error(response.status_code, response.headers, body)
                lines = response.aiter_lines()
                token_by = first_by
                what = "first token"
                while True:
                    try:
                        line = await self._read(anext(lines), token_by, deadline, what)
                    except StopAsyncIteration:
                        raise unavailable(
                            "the model provider's stream ended without [DONE]",
                            "PROVIDER_STREAM_CUT",
                        ) from None
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, event:/id: lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    for item in self._parse(data):
                        if isinstance(item, tuple) and item[0]:
                            token_by = time.monotonic() + s.idle_timeout_s
                            what = "next token"
                        yield item
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            # refused, reset, a broken chunked body: what an HTTP client sees of a lost upstream
            raise unavailable(
                f"model provider unreachable or connection lost ({type(exc).__name__})",
                "PROVIDER_UNAVAILABLE"
                if isinstance(exc, httpx.ConnectError)
                else "PROVIDER_STREAM_CUT",
            ) from None

    @staticmethod
    def _parse(data: str) -> list[tuple[str, str | None] | Usage]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise unavailable(
                "the model provider sent a chunk that is not JSON", "PROVIDER_STREAM_CUT"
            ) from None
        if not isinstance(chunk, dict):
            raise unavailable(
                "the model provider sent a chunk that is not an object", "PROVIDER_STREAM_CUT"
            )
        if "error" in chunk:
            _, _, message = _error_fields(chunk)
            raise unavailable(
                "the model provider failed mid-stream" + (f": {message}" if message else ""),
                "PROVIDER_STREAM_ERROR",
            )
        items: list[tuple[str, str | None] | Usage] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            content = (choice.get("delta") or {}).get("content") or ""
            items.append((str(content), choice.get("finish_reason")))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            items.append(
                Usage(
                    int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                )
            )
        return items

    async def _read(
        self, awaitable: Awaitable[T], provider_by: float, deadline: float | None, what: str
    ) -> T:
        """Awaits `awaitable` until provider_by (the provider's timeout) or the caller's
        deadline, whichever comes first."""
        caller_first = deadline is not None and deadline < provider_by
        until = deadline if deadline is not None and caller_first else provider_by
        try:
            return await asyncio.wait_for(awaitable, max(until - time.monotonic(), 0.0))
        except TimeoutError:
            if caller_first:
                raise GenerationError(
                    _status(
                        code_pb2.DEADLINE_EXCEEDED,
                        f"the caller's deadline ran out waiting for the model's {what}",
                        "DEADLINE_EXCEEDED",
                    )
                ) from None
            limit = self.settings.first_token_timeout_s
            if what == "next token":
                limit = self.settings.idle_timeout_s
            raise unavailable(
                f"the model provider sent no {what} within {limit:g} s", "PROVIDER_TIMEOUT"
            ) from None

"""A small OpenAI-compatible chat server for tests, scripted per test.

It speaks the wire format of `POST /v1/chat/completions` with `stream: true` exactly: HTTP/1.1
with a chunked `text/event-stream` body of `data: {chat.completion.chunk}` events (a role
chunk, content chunks, a finish chunk, a usage chunk with empty `choices` when
`stream_options.include_usage` is set), then `data: [DONE]`. Errors are OpenAI's
`{"error": {"message", "type", "param", "code"}}` bodies. tests/unit/test_fake_openai.py
proves it faithful by reading it with the official `openai` client.

Each request takes the next `Script` queued with `script(...)` (or `default` when none is
left); what was asked is kept in `requests`. The server runs on its own thread and event
loop, so sync and async tests, and other processes, can all call it.

    with FakeOpenAI() as fake:
        fake.script(Script(tokens=["Hello", " world"], first_token_delay_s=0.5))
        ... POST fake.base_url + "/chat/completions" ...
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class Script:
    """How the server answers one request."""

    tokens: list[str] = field(default_factory=lambda: ["The answer ", "is 42 ", "[1]."])
    status: int = 200  # != 200: an error body instead of a stream
    error: dict[str, Any] | None = None  # the error object of a non-200 answer
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {"Retry-After": "5"}
    first_token_delay_s: float = 0.0  # before the first content chunk (after the role chunk)
    token_delay_s: float = 0.0  # before each later content chunk
    idle_gap: tuple[int, float] | None = None  # (before content chunk i, extra seconds)
    error_after: int | None = None  # after this many content chunks, an error event
    cut_after: int | None = None  # after this many content chunks, close with no [DONE]
    finish_reason: str = "stop"
    prompt_tokens: int = 17


# Ready-made error scripts, as OpenAI answers them.
def rate_limited(retry_after_s: float) -> Script:
    return Script(
        status=429,
        headers={"Retry-After": f"{retry_after_s:g}"},
        error={
            "message": "Rate limit reached for requests",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    )


def quota_exhausted() -> Script:
    return Script(
        status=429,
        error={
            "message": "You exceeded your current quota, please check your plan.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        },
    )


def unauthorized() -> Script:
    return Script(
        status=401,
        error={
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    )


def model_not_found(model: str = "nope") -> Script:
    return Script(
        status=404,
        error={
            "message": f"The model `{model}` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        },
    )


def server_error() -> Script:
    return Script(
        status=500,
        error={
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    )


class FakeOpenAI:
    def __init__(self, default: Script | None = None) -> None:
        self.default = default or Script()
        self.scripts: deque[Script] = deque()
        self.requests: list[dict[str, Any]] = []  # {"path", "headers", "json"}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *scripts: Script) -> None:
        self.scripts.extend(scripts)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one request after another on the connection
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = {"path": path, "headers": headers, "json": json.loads(body or b"{}")}
                self.requests.append(request)
                script = self.scripts.popleft() if self.scripts else self.default
                if not await self._answer(writer, request["json"], script):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(
        self, writer: asyncio.StreamWriter, request: dict[str, Any], script: Script
    ) -> bool:
        """Writes the scripted answer; False when the connection must close."""
        if script.status != 200:
            payload = json.dumps({"error": script.error}).encode()
            head = [
                f"HTTP/1.1 {script.status} {REASONS.get(script.status, 'Error')}",
                "Content-Type: application/json",
                f"Content-Length: {len(payload)}",
                *(f"{k}: {v}" for k, v in script.headers.items()),
            ]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            await writer.drain()
            return True
        head = [
            "HTTP/1.1 200 OK",
            "Content-Type: text/event-stream; charset=utf-8",
            "Transfer-Encoding: chunked",
            "Cache-Control: no-cache",
            *(f"{k}: {v}" for k, v in script.headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        model = str(request.get("model", "fake"))
        created = int(time.time())

        async def event(data: str) -> None:
            raw = f"data: {data}\n\n".encode()
            writer.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            await writer.drain()

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
            return json.dumps(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [
                        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                    ],
                    **extra,
                }
            )

        await event(chunk({"role": "assistant", "content": ""}, None))
        for i, token in enumerate(script.tokens):
            if script.cut_after is not None and i == script.cut_after:
                return False  # the connection closes mid-body: no [DONE], no last chunk
            if script.error_after is not None and i == script.error_after:
                await event(
                    json.dumps(
                        {
                            "error": {
                                "message": "The model crashed while generating.",
                                "type": "server_error",
                                "param": None,
                                "code": "internal_error",
                            }
                        }
                    )
                )
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return True
            delay = script.first_token_delay_s if i == 0 else script.token_delay_s
            if script.idle_gap is not None and script.idle_gap[0] == i:
                delay += script.idle_gap[1]
            if delay:
                await asyncio.sleep(delay)
            await event(chunk({"content": token}, None))
        await event(chunk({}, script.finish_reason))
        if (request.get("stream_options") or {}).get("include_usage"):
            completion = len(script.tokens)
            usage = {
                "prompt_tokens": script.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": script.prompt_tokens + completion,
            }
            await event(
                json.dumps(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": None,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        await event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

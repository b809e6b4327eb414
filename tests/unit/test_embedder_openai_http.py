"""The OpenAI-compatible embedding backend against a scripted local HTTP server: the request
it sends, the response checks, and the gRPC status each upstream failure becomes."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest

from embedder_svc.backends.openai_http import (
    OpenAIEmbedder,
    OpenAIEmbeddingSettings,
    UpstreamError,
    retry_after_seconds,
)

DIM = 4
API_KEY = "sk-test-secret-123"


@dataclass
class Script:
    """What the server answers next: status, JSON body (or raw bytes), headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


def ok_body(inputs: list[str], order: list[int] | None = None) -> dict[str, Any]:
    rows = [
        {"object": "embedding", "index": i, "embedding": [float(i + 1)] * DIM}
        for i in range(len(inputs))
    ]
    if order is not None:
        rows = [rows[i] for i in order]
    return {"object": "list", "data": rows, "model": "m", "usage": {"prompt_tokens": 1}}


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append({"path": self.path, **request})
            script.auth.append(self.headers.get("Authorization", ""))
            body = script.body if script.body is not None else ok_body(request["input"])
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(script.status)
            for k, v in {"Content-Type": "application/json", **script.headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def backend(base_url: str, **overrides: Any) -> OpenAIEmbedder:
    settings = {"base_url": base_url, "model": "m", "dimension": DIM, "api_key": API_KEY}
    return OpenAIEmbedder(OpenAIEmbeddingSettings(**{**settings, **overrides}))


async def failure(base_url: str, script: Script, **overrides: Any) -> UpstreamError:
    embedder = backend(base_url, **overrides)
    try:
        with pytest.raises(UpstreamError) as caught:
            await embedder.aembed(["a", "b"], "query")
    finally:
        await embedder.aclose()
    assert API_KEY not in str(caught.value)
    return caught.value


async def test_embeds_in_batches_ordered_by_index(server: tuple[str, Script]) -> None:
    base_url, script = server
    script.body = None
    embedder = backend(base_url, batch_size=2)
    try:
        vectors = await embedder.aembed(["a", "b", "c"], "passage")
    finally:
        await embedder.aclose()
    assert embedder.model == "m-4"
    assert vectors.tolist() == [[1.0] * DIM, [2.0] * DIM, [1.0] * DIM]
    assert [r["input"] for r in script.requests] == [["a", "b"], ["c"]]
    assert script.requests[0]["path"] == "/v1/embeddings"
    assert script.requests[0]["model"] == "m"
    assert "input_type" not in script.requests[0]  # mode "none": nothing extra is sent
    assert script.auth == [f"Bearer {API_KEY}"] * 2


async def test_rows_out_of_order_are_put_back_by_index(server: tuple[str, Script]) -> None:
    base_url, script = server
    script.body = ok_body(["a", "b", "c"], order=[2, 0, 1])
    embedder = backend(base_url)
    try:
        vectors = await embedder.aembed(["a", "b", "c"])
    finally:
        await embedder.aclose()
    assert vectors[:, 0].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("mode", "inputs", "extra"),
    [
        ("field", ["a"], {"input_type": "passage"}),
        ("e5-prefix", ["passage: a"], {}),
    ],
)
async def test_input_type_reaches_the_server(
    server: tuple[str, Script], mode: str, inputs: list[str], extra: dict[str, str]
) -> None:
    base_url, script = server
    embedder = backend(base_url, input_type_mode=mode)
    try:
        await embedder.aembed(["a"], "passage")
    finally:
        await embedder.aclose()
    sent = script.requests[0]
    assert sent["input"] == inputs
    assert {k: sent[k] for k in extra} == extra


async def test_401_is_a_configuration_failure(server: tuple[str, Script]) -> None:
    base_url, script = server
    script.status, script.body = 401, {"error": {"message": "bad key", "type": "x", "code": None}}
    error = await failure(base_url, script)
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "EMBEDDING_UPSTREAM_AUTH",
    )


async def test_429_with_retry_after_is_resource_exhausted_with_the_wait(
    server: tuple[str, Script],
) -> None:
    base_url, script = server
    script.status, script.headers = 429, {"Retry-After": "7"}
    script.body = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit"}}
    error = await failure(base_url, script)
    assert (error.code, error.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "EMBEDDING_UPSTREAM_RATE_LIMITED",
    )
    assert _retry_delay_s(error) == pytest.approx(7.0)


async def test_429_insufficient_quota_is_not_retryable(server: tuple[str, Script]) -> None:
    base_url, script = server
    script.status, script.headers = 429, {"Retry-After": "1"}
    script.body = {"error": {"message": "quota", "type": "x", "code": "insufficient_quota"}}
    error = await failure(base_url, script)
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "EMBEDDING_UPSTREAM_QUOTA",
    )


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "boom", "type": "server_error", "code": None}},  # OpenAI
        {"error": "Model is overloaded", "error_type": "overloaded"},  # TEI's flat body
        {"object": "error", "message": "boom", "type": "InternalError", "code": 500},  # vLLM
        b"<html>502 Bad Gateway</html>",  # a proxy's page
    ],
)
async def test_500_is_unavailable_whatever_the_body(server: tuple[str, Script], body: Any) -> None:
    base_url, script = server
    script.status, script.body = 500, body
    error = await failure(base_url, script)
    assert (error.code, error.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "EMBEDDING_UPSTREAM_UNAVAILABLE",
    )


async def test_404_unknown_model_and_413_too_long(server: tuple[str, Script]) -> None:
    base_url, script = server
    script.status, script.body = 404, {"error": {"message": "no", "code": "model_not_found"}}
    error = await failure(base_url, script)
    assert error.reason == "EMBEDDING_UPSTREAM_MODEL_NOT_FOUND"
    script.status, script.body = (
        413,
        {"error": "Input validation error", "error_type": "Validation"},
    )
    error = await failure(base_url, script)
    assert (error.code, error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "EMBEDDING_UPSTREAM_REJECTED_INPUT",
    )


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ({"data": [{"index": 0, "embedding": [1.0] * DIM}]}, "1 embeddings for 2 texts"),
        (
            {
                "data": [
                    {"index": 0, "embedding": [math.nan] * DIM},
                    {"index": 1, "embedding": [1.0] * DIM},
                ]
            },
            "NaN",
        ),
        (
            {"data": [{"index": 0, "embedding": [1.0] * 3}, {"index": 1, "embedding": [1.0] * 3}]},
            "dimension 3",
        ),
        (
            {
                "data": [
                    {"index": 0, "embedding": [1.0] * DIM},
                    {"index": 0, "embedding": [1.0] * DIM},
                ]
            },
            "index 0",
        ),
        (b"not json", "not JSON"),
    ],
)
async def test_a_bad_200_response_is_refused(
    server: tuple[str, Script], body: Any, what: str
) -> None:
    base_url, script = server
    script.body = body
    error = await failure(base_url, script)
    assert (error.code, error.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "EMBEDDING_UPSTREAM_BAD_RESPONSE",
    )
    assert what in str(error)


async def test_connection_refused_is_unavailable() -> None:
    from harag_cli.localports import free_port

    error = await failure(f"http://127.0.0.1:{free_port()}/v1", Script())
    assert (error.code, error.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "EMBEDDING_UPSTREAM_UNAVAILABLE",
    )


def test_the_key_is_not_in_the_settings_repr() -> None:
    settings = OpenAIEmbeddingSettings("http://x/v1", "m", DIM, api_key=API_KEY)
    assert API_KEY not in repr(settings)


def test_retry_after_forms() -> None:
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def _retry_delay_s(error: UpstreamError) -> float:
    from google.rpc import error_details_pb2, status_pb2

    for key, value in error.status.trailing_metadata:
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return float(info.retry_delay.ToNanoseconds()) / 1e9
    raise AssertionError("no RetryInfo")

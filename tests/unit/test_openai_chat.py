"""The OpenAI-compatible chat backend against the scripted fake provider (tests/fake_openai.py)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from fake_openai import (
    FakeOpenAI,
    Script,
    model_not_found,
    quota_exhausted,
    rate_limited,
    server_error,
    unauthorized,
)
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from generator_svc.backends import Finish
from generator_svc.backends.openai_chat import (
    ChatSettings,
    OpenAIChatGenerator,
    build_messages,
    citations_of,
    retry_after_s,
    status_error,
)
from generator_svc.backends.streaming import Delta, Final, GenerationError
from harag.v1 import common_pb2

DOCS = [
    common_pb2.Document(id="d1", text="The retry budget is ten percent of all requests."),
    common_pb2.Document(id="d2", text="Bulkheads give each dependency its own pool."),
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def provider(fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake.scripts.clear()
    fake.requests.clear()
    yield fake
    fake.scripts.clear()


def backend(fake: FakeOpenAI, **overrides: object) -> OpenAIChatGenerator:
    settings = {
        "base_url": fake.base_url,
        "model": "test-model",
        "api_key": "sk-test-secret",
        "first_token_timeout_s": 2.0,
        "idle_timeout_s": 2.0,
        **overrides,
    }
    return OpenAIChatGenerator(ChatSettings(**settings))  # type: ignore[arg-type]


async def run(
    generator: OpenAIChatGenerator, limit: int = 1000, budget_s: float | None = None
) -> tuple[list[tuple[float, str]], Final]:
    """(arrival time, text) of each delta, and the final event."""
    deltas: list[tuple[float, str]] = []
    final = None
    async for event in generator.stream("What is the retry budget?", DOCS, limit, budget_s):
        if isinstance(event, Delta):
            deltas.append((time.monotonic(), event.text))
        else:
            final = event
    assert final is not None
    await generator.aclose()
    return deltas, final


async def failure(
    generator: OpenAIChatGenerator, budget_s: float | None = None
) -> tuple[grpc.StatusCode, str, float | None]:
    """The failure's gRPC code, ErrorInfo reason and RetryInfo delay (seconds)."""
    with pytest.raises(GenerationError) as raised:
        await run(generator, budget_s=budget_s)
    status = raised.value.status
    reason, delay = "", None
    rich = rpc_status.from_call(_Call(status))
    assert rich is not None
    for any_msg in rich.details:
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        if any_msg.Unpack(info):
            reason = info.reason
        elif any_msg.Unpack(retry):
            delay = retry.retry_delay.ToNanoseconds() / 1e9
    return status.code, reason, delay


class _Call:
    """Just enough of a grpc.Call for rpc_status.from_call."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> tuple:
        return self._status.trailing_metadata


async def test_a_streamed_answer_arrives_delta_by_delta_with_citations_and_usage(provider):
    provider.script(Script(tokens=["Ten ", "percent ", "[1]."], token_delay_s=0.2))
    deltas, final = await run(backend(provider))
    assert [text for _, text in deltas] == ["Ten ", "percent ", "[1]."]
    assert deltas[-1][0] - deltas[0][0] >= 0.35  # each delta was passed on as it came
    assert final.answer.text == "Ten percent [1]."
    assert final.answer.citations == (1,)
    assert final.answer.finish is Finish.STOP
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (17, 3)


async def test_the_request_is_a_streamed_chat_completion_with_numbered_passages(provider):
    await run(backend(provider, max_tokens=64, temperature=0.5))
    request = provider.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test-secret"
    body = request["json"]
    assert body["model"] == "test-model"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.5
    user = body["messages"][-1]["content"]
    assert "[1] The retry budget is ten percent" in user
    assert "[2] Bulkheads give each dependency" in user
    assert "What is the retry budget?" in user
    assert "[n]" in body["messages"][0]["content"]


def test_the_context_is_trimmed_to_the_token_budget():
    long = [common_pb2.Document(id=f"d{i}", text="word " * 400) for i in range(5)]
    messages, sent = build_messages("q", long, context_tokens=600)  # about 2,400 characters
    assert sent == 2  # the first whole, the second cut, the rest left out
    assert len(messages[-1]["content"]) < 2600
    assert "[3]" not in messages[-1]["content"]


def test_citations_name_only_passages_that_were_sent():
    assert citations_of("A [2] and [1], again [2], not [7] or [0].", 3) == (2, 1)


async def test_an_answer_is_cut_at_max_answer_chars(provider):
    provider.script(Script(tokens=["abcdef", "ghijkl", "mnopqr"]))
    deltas, final = await run(backend(provider), limit=8)
    assert final.answer.text == "abcdefgh"
    assert "".join(text for _, text in deltas) == "abcdefgh"
    assert final.answer.finish is Finish.LENGTH


async def test_a_length_finish_from_the_model_is_reported(provider):
    provider.script(Script(tokens=["partial"], finish_reason="length"))
    _, final = await run(backend(provider))
    assert final.answer.finish is Finish.LENGTH


@pytest.mark.parametrize(
    ("script", "code", "reason"),
    [
        (server_error(), grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        (quota_exhausted(), grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_QUOTA"),
        (unauthorized(), grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_AUTH"),
        (model_not_found(), grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_MODEL_NOT_FOUND"),
        (
            Script(status=400, error={"message": "bad", "type": "invalid_request_error"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "PROVIDER_REJECTED_REQUEST",
        ),
        (
            Script(status=408, error={"message": "slow"}),
            grpc.StatusCode.UNAVAILABLE,
            "PROVIDER_UNAVAILABLE",
        ),
        (Script(error_after=1), grpc.StatusCode.UNAVAILABLE, "PROVIDER_STREAM_ERROR"),
        (Script(cut_after=1), grpc.StatusCode.UNAVAILABLE, "PROVIDER_STREAM_CUT"),
    ],
    ids=["500", "quota-429", "401", "404-model", "400", "408", "error-in-stream", "cut"],
)
async def test_provider_failures_map_to_grpc_statuses(provider, script, code, reason):
    provider.script(script)
    assert (await failure(backend(provider)))[:2] == (code, reason)


async def test_a_429_with_retry_after_is_resource_exhausted_with_retry_info(provider):
    provider.script(rate_limited(7))
    assert await failure(backend(provider)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "PROVIDER_RATE_LIMITED",
        7.0,
    )


async def test_a_slow_first_token_times_out_as_unavailable(provider):
    provider.script(Script(first_token_delay_s=1.5))
    started = time.monotonic()
    code, reason, _ = await failure(backend(provider, first_token_timeout_s=0.3))
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "PROVIDER_TIMEOUT")
    assert time.monotonic() - started < 1.2


async def test_an_idle_gap_between_tokens_times_out_as_unavailable(provider):
    provider.script(Script(tokens=["a", "b", "c"], idle_gap=(2, 1.5)))
    code, reason, _ = await failure(backend(provider, idle_timeout_s=0.3))
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "PROVIDER_TIMEOUT")


async def test_the_callers_deadline_comes_before_the_provider_timeouts(provider):
    provider.script(Script(first_token_delay_s=1.5))
    started = time.monotonic()
    code, reason, _ = await failure(backend(provider, first_token_timeout_s=5), budget_s=0.3)
    assert (code, reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED")
    assert time.monotonic() - started < 1.2


async def test_a_refused_connection_is_unavailable():
    from harag_cli.localports import free_port

    generator = OpenAIChatGenerator(
        ChatSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m")
    )
    code, reason, _ = await failure(generator)
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE")


def test_the_api_key_is_never_in_the_backends_repr(provider):
    assert "sk-test-secret" not in repr(backend(provider))


@pytest.mark.parametrize(
    ("status", "headers", "body", "code", "reason"),
    [
        # vLLM: a flat error object with an integer code
        (
            404,
            {},
            {
                "object": "error",
                "message": "The model `x` does not exist.",
                "type": "NotFoundError",
                "code": 404,
            },
            grpc.StatusCode.FAILED_PRECONDITION,
            "PROVIDER_MODEL_NOT_FOUND",
        ),
        # TEI / TGI: {"error": "...", "error_type": "..."}
        (
            422,
            {},
            {"error": "Input validation error", "error_type": "validation"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "PROVIDER_REJECTED_REQUEST",
        ),
        (413, {}, None, grpc.StatusCode.INVALID_ARGUMENT, "PROVIDER_REJECTED_REQUEST"),
        (403, {}, None, grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_AUTH"),
        (409, {}, None, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        (502, {}, "<html>bad gateway</html>", grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        (503, {}, None, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        (
            503,
            {"Retry-After": "2"},
            None,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "PROVIDER_RATE_LIMITED",
        ),
        (
            429,
            {},
            {"error": {"message": "slow down", "code": "rate_limit_exceeded"}},
            grpc.StatusCode.UNAVAILABLE,
            "PROVIDER_UNAVAILABLE",
        ),
    ],
    ids=[
        "vllm-404",
        "tei-422",
        "413",
        "403",
        "409",
        "502-html",
        "503",
        "503-retry-after",
        "429-no-retry-after",
    ],
)
def test_every_error_shape_maps_by_status_and_code(status, headers, body, code, reason):
    error = status_error(status, httpx.Headers(headers), body)
    rich = rpc_status.from_call(_Call(error.status))
    assert rich is not None
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in rich.details)
    assert (error.status.code, info.reason) == (code, reason)


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_s("3") == 3.0
    assert retry_after_s("soon") is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= (retry_after_s(later) or 0) <= 61

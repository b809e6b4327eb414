"""Two model providers in one generator chain, end to end: generator processes with
backend=openai on fake provider A and fake provider B (tests/fake_openai.py), behind a gateway
whose generate chain is provider-a, provider-b, then the mesh's extractive fallback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fake_openai import (
    FakeOpenAI,
    Script,
    model_not_found,
    quota_exhausted,
    rate_limited,
    unauthorized,
)
from processes import service_process
from telemetry.support import metrics_address, scrape, value

import harag as client_lib
from harag_cli import render
from harag_cli.meshctl import list_breakers, states_of

B_TOKENS = ["Provider B ", "says ten ", "percent [1]."]


@pytest.fixture(scope="module")
def providers() -> Iterator[dict[str, tuple[FakeOpenAI, str]]]:
    with (
        FakeOpenAI() as a,
        FakeOpenAI(default=Script(tokens=B_TOKENS)) as b,
        service_process(
            "generator_svc",
            "primary",
            backend="openai",
            openai_base_url=a.base_url,
            openai_model="model-a",
        ) as (_, address_a),
        service_process(
            "generator_svc",
            "primary",
            backend="openai",
            openai_base_url=b.base_url,
            openai_model="model-b",
        ) as (_, address_b),
    ):
        yield {"provider-a": (a, address_a), "provider-b": (b, address_b)}


def chain(mesh, providers) -> str:
    fallback = mesh.address("generator-fallback")
    return (
        f"provider-a={providers['provider-a'][1]},provider-b={providers['provider-b'][1]},"
        f"generator-fallback={fallback}"
    )


async def test_provider_a_failing_mid_stream_is_withdrawn_and_b_answers(
    clean_faults, extra_gateway, known_questions, providers
):
    fake_a, _ = providers["provider-a"]
    fake_a.default = Script(tokens=["Provider A ", "starts ", "then dies"], cut_after=2)
    async with (
        extra_gateway(
            HARAG_GENERATOR_CHAIN=chain(clean_faults, providers), HARAG_HEDGE_ENABLED="false"
        ) as gateway,
        client_lib.AsyncClient(gateway.address, timeout=20) as client,
    ):
        events = [e async for e in client.stream_query(known_questions[4]["question"])]
    withdrawn = [e for e in events if isinstance(e, client_lib.Withdrawn)]
    assert withdrawn and {e.upstream for e in withdrawn} == {"provider-a"}
    assert withdrawn[0].withdrawn_chars == len("Provider A starts ")
    assert "UNAVAILABLE" in withdrawn[0].reason
    last = max(i for i, e in enumerate(events) if isinstance(e, client_lib.Withdrawn))
    after = "".join(e.text for e in events[last:] if isinstance(e, client_lib.AnswerChunk))
    final = events[-1]
    assert isinstance(final, client_lib.FinalEvent)
    assert final.answer == after
    assert final.answer.startswith("Provider B says ten percent [1].")
    generate = final.stages[-1]
    assert generate.served_by == "provider-b"
    upstreams = [a.upstream for a in generate.attempts]
    assert upstreams[0] == "provider-a" and upstreams[-1] == "provider-b"
    assert generate.attempts[-1].outcome == "OK"
    # Cost on the receipt: the answering call's model and tokens; the failed one reported none.
    answered = generate.attempts[-1]
    assert answered.model == "model-b"
    assert (answered.usage.prompt_tokens, answered.usage.completion_tokens) == (
        Script().prompt_tokens,
        len(B_TOKENS),
    )
    assert not generate.attempts[0].HasField("usage") and not generate.attempts[0].model


async def test_a_retry_after_longer_than_the_deadline_goes_to_b_without_waiting(
    clean_faults, extra_gateway, known_questions, providers
):
    fake_a, _ = providers["provider-a"]
    fake_a.default = rate_limited(60)
    async with (
        extra_gateway(
            HARAG_GENERATOR_CHAIN=chain(clean_faults, providers), HARAG_HEDGE_ENABLED="false"
        ) as gateway,
        client_lib.AsyncClient(gateway.address, timeout=10) as client,
    ):
        started = time.monotonic()
        result = await client.query(known_questions[4]["question"])
        took = time.monotonic() - started
    assert result.answer.startswith("Provider B says ten percent [1].")
    generate = result.stages[-1]
    assert generate.served_by == "provider-b"
    assert generate.attempts[0].upstream == "provider-a"
    assert generate.attempts[0].outcome == "RESOURCE_EXHAUSTED"
    assert took < 5  # nobody waited the 60 s Retry-After


@pytest.mark.parametrize(
    "failure, reason",
    [
        (unauthorized, "PROVIDER_AUTH"),
        (quota_exhausted, "PROVIDER_QUOTA"),
        (model_not_found, "PROVIDER_MODEL_NOT_FOUND"),
    ],
)
async def test_a_misconfigured_provider_is_counted_not_retried_and_b_answers(
    clean_faults, extra_gateway, known_questions, providers, failure, reason
):
    """401/403, quota 429 and 404 model: FAILED_PRECONDITION with ErrorInfo, one attempt
    each (never retried), the next tier answers, and the breaker opens on them."""
    fake_a, _ = providers["provider-a"]
    fake_a.default = failure()
    env = {
        "HARAG_GENERATOR_CHAIN": chain(clean_faults, providers),
        "HARAG_HEDGE_ENABLED": "false",
        "HARAG_BREAKER_MINIMUM_CALLS": "3",
        "HARAG_BREAKER_WINDOW_SIZE": "3",
        "HARAG_BREAKER_WAIT_IN_OPEN_S": "60",
        "HARAG_BREAKER_MAX_WAIT_IN_OPEN_S": "60",
    }
    async with (
        extra_gateway(**env) as gateway,
        client_lib.AsyncClient(gateway.address, timeout=10) as client,
    ):
        outcomes = []
        for i in range(4):
            result = await client.query(f"{known_questions[4]['question']} ({reason} {i})")
            assert result.answer.startswith("Provider B says ten percent [1].")
            generate = result.stages[-1]
            assert generate.served_by == "provider-b"
            outcomes.append([a.outcome for a in generate.attempts if a.upstream == "provider-a"])
        breakers = states_of(await list_breakers(gateway.admin_channel))
        samples = scrape(metrics_address(clean_faults.logs.json_of("gateway-extra")))
    assert outcomes[:3] == [["FAILED_PRECONDITION"]] * 3  # one attempt each: no retry
    assert outcomes[3] == ["BREAKER_OPEN"]
    assert breakers["provider-a"] == "OPEN"
    # Tokens per model and kind in the metrics: B answered 4 times.
    tokens = "harag_gateway_model_tokens_total"
    assert value(samples, tokens, model="model-b", kind="completion") == 4 * len(B_TOKENS)
    assert value(samples, tokens, model="model-b", kind="prompt") == 4 * Script().prompt_tokens
    assert value(samples, tokens, model="model-a") == 0
    shown = "\n".join(render.receipt(list(result.stages)))
    assert f"model-b: {Script().prompt_tokens} prompt + {len(B_TOKENS)} completion tokens" in shown

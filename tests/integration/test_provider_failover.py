"""Two model providers in one generator chain, end to end: generator processes with
backend=openai on fake provider A and fake provider B (tests/fake_openai.py), behind a gateway
whose generate chain is provider-a, provider-b, then the mesh's extractive fallback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fake_openai import FakeOpenAI, Script, rate_limited
from processes import service_process

import harag as client_lib

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

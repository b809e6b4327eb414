"""The fake provider (tests/fake_openai.py) is faithful: the official `openai` client reads it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from fake_openai import FakeOpenAI, Script, quota_exhausted, rate_limited

MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def client() -> Iterator[tuple[FakeOpenAI, openai.OpenAI]]:
    with FakeOpenAI() as fake:
        yield fake, openai.OpenAI(base_url=fake.base_url, api_key="sk-fake", max_retries=0)


def test_the_official_client_reads_the_stream_and_its_usage(client):
    fake, api = client
    fake.script(Script(tokens=["Hello", ", ", "world [1]."], prompt_tokens=9))
    stream = api.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, world [1]."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 3, 12)
    assert all(c.model == "m" and c.object == "chat.completion.chunk" for c in chunks)


def test_the_official_client_sees_the_fakes_errors_as_openais(client):
    fake, api = client
    fake.script(quota_exhausted(), rate_limited(3))
    with pytest.raises(openai.RateLimitError) as quota:
        api.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert quota.value.code == "insufficient_quota"
    with pytest.raises(openai.RateLimitError) as limited:
        api.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert limited.value.response.headers["retry-after"] == "3"


def test_the_official_client_raises_on_an_error_inside_the_stream(client):
    fake, api = client
    fake.script(Script(tokens=["a", "b"], error_after=1))
    with pytest.raises(openai.APIError, match="crashed"):
        list(api.chat.completions.create(model="m", messages=MESSAGES, stream=True))

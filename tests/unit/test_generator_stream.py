"""Streaming and validation of the GeneratorService servicer, without a network."""

from __future__ import annotations

import pytest

from generator_svc.service import chunks, validate
from harag.v1 import common_pb2, generator_pb2


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        "A retry budget caps retries at a small fraction of all requests [2].",
        "  leading and trailing spaces\nand\nnewlines  ",
        "x" * 100,
    ],
)
@pytest.mark.parametrize("size", [1, 5, 24])
def test_deltas_concatenate_to_the_text(text: str, size: int) -> None:
    deltas = list(chunks(text, size))
    assert "".join(deltas) == text
    assert all(deltas)
    assert all(len(delta) >= size for delta in deltas[:-1])


def test_deltas_end_after_whole_words() -> None:
    deltas = list(chunks("one two three four five six seven", 6))
    assert deltas == ["one two ", "three ", "four five ", "six seven"]


def _request(query: str, docs: int, max_chars: int) -> generator_pb2.GenerateRequest:
    context = [
        common_pb2.ScoredDocument(document=common_pb2.Document(id=str(i), text="t"))
        for i in range(docs)
    ]
    return generator_pb2.GenerateRequest(query=query, context=context, max_answer_chars=max_chars)


def test_every_bad_field_is_named() -> None:
    violations = validate(_request(" ", 4, -1), max_context_docs=3)
    assert [field for field, _ in violations.violations] == ["query", "context", "max_answer_chars"]


def test_valid_request_has_no_violations() -> None:
    assert not validate(_request("q", 3, 0), max_context_docs=3)

"""Size bounds of documents and replies (servicekit.limits) and the bounded error details
(servicekit.errors.FieldViolations)."""

from __future__ import annotations

import pytest

from generator_svc.service import validate as validate_generate
from harag.v1 import common_pb2, generator_pb2, retriever_pb2
from servicekit.errors import MAX_VIOLATIONS, FieldViolations
from servicekit.limits import (
    MIN_TRIMMED_TEXT_BYTES,
    TRIM_MARK,
    DocumentLimits,
    check_metadata,
    trim_documents,
)

LIMITS = DocumentLimits(max_metadata_bytes=1000, max_metadata_keys=4, max_metadata_value_chars=300)


def scored(i: int, text_chars: int, metadata_bytes: int = 0) -> common_pb2.ScoredDocument:
    document = common_pb2.Document(id=f"doc-{i}", text="x" * text_chars)
    if metadata_bytes:
        document.metadata["blob"] = "m" * metadata_bytes
    return common_pb2.ScoredDocument(document=document, score=1.0 - i / 100)


def encoded(documents: list[common_pb2.ScoredDocument]) -> int:
    """Their size as the documents of a reply (a repeated message field)."""
    return retriever_pb2.SearchResponse(documents=documents).ByteSize()


def violations_of(document: common_pb2.Document) -> list[tuple[str, str]]:
    found = FieldViolations()
    check_metadata(document, LIMITS, found, "documents[3]")
    return found.violations


def test_metadata_within_every_bound_passes() -> None:
    document = common_pb2.Document(id="a", text="t", metadata={"k": "v" * 300})
    document.metadata_values["tags"].values.extend(["rag", "retrieval"])
    assert violations_of(document) == []


@pytest.mark.parametrize(
    ("metadata", "values", "named"),
    [
        ({f"k{i}": "v" for i in range(5)}, {}, "5 keys; at most 4"),
        ({"k": "v"}, {f"m{i}": ["a"] for i in range(4)}, "5 keys; at most 4"),
        ({"k": "v" * 301}, {}, "301 characters; at most 300"),
        ({"k": "v"}, {"tags": ["x" * 301]}, "301 characters; at most 300"),
        ({"a": "v" * 300, "b": "v" * 300, "c": "v" * 300, "d": "v" * 100}, {}, "1004 bytes"),
        # Bytes, not characters: 300 three-byte characters are 900 bytes.
        ({"a": "\u20ac" * 300, "b": "v" * 100}, {}, "1002 bytes"),
    ],
)
def test_metadata_over_a_bound_names_the_field_and_the_setting(
    metadata: dict[str, str], values: dict[str, list[str]], named: str
) -> None:
    document = common_pb2.Document(id="a", text="t", metadata=metadata)
    for key, listed in values.items():
        document.metadata_values[key].values.extend(listed)
    [(field, description)] = violations_of(document)
    assert field == "documents[3].metadata"
    assert named in description and "(setting max_metadata_" in description


def test_documents_that_fit_are_left_whole() -> None:
    documents = [scored(i, 1000) for i in range(5)]
    trimmed = trim_documents(documents, 100_000)
    assert not trimmed.trimmed and trimmed.note() == ""
    assert trimmed.documents == documents


def test_long_texts_are_shortened_first_keeping_every_document() -> None:
    documents = [scored(0, 100), *(scored(i, 50_000) for i in range(1, 10))]
    budget = 100_000
    trimmed = trim_documents(documents, budget)
    assert len(trimmed.documents) == 10 and trimmed.dropped == 0
    assert trimmed.shortened == 9
    assert trimmed.documents[0].document.text == "x" * 100  # short texts stay whole
    assert all(d.document.text.endswith(TRIM_MARK) for d in trimmed.documents[1:])
    assert encoded(trimmed.documents) <= budget
    # Nearly all of the budget is used: texts are cut to one common length, not to nothing.
    assert encoded(trimmed.documents) > budget * 0.95
    assert "9 texts shortened" in trimmed.note()
    assert documents[1].document.text == "x" * 50_000  # the input is not changed


def test_the_lowest_ranked_are_dropped_when_shortening_is_not_enough() -> None:
    # Metadata cannot be shortened: 50 documents with 30 KB each need 1.5 MB.
    documents = [scored(i, 2000, metadata_bytes=30_000) for i in range(50)]
    budget = 500_000
    trimmed = trim_documents(documents, budget)
    assert trimmed.dropped > 0
    kept = trimmed.documents
    assert [d.document.id for d in kept] == [f"doc-{i}" for i in range(len(kept))]
    assert all(len(d.document.text.encode()) <= MIN_TRIMMED_TEXT_BYTES + 3 for d in kept)
    assert encoded(kept) <= budget
    assert f"{trimmed.dropped} of 50 sources dropped" in trimmed.note()


def test_multibyte_text_is_cut_on_a_character_boundary() -> None:
    documents = [
        common_pb2.ScoredDocument(document=common_pb2.Document(id=str(i), text="\u00e9" * 20_000))
        for i in range(4)
    ]
    trimmed = trim_documents(documents, 30_000)
    for document in trimmed.documents:
        assert set(document.document.text.removesuffix(TRIM_MARK)) == {"\u00e9"}
    assert encoded(trimmed.documents) <= 30_000


def test_a_hundred_bad_fields_still_make_a_deliverable_status() -> None:
    violations = FieldViolations()
    for i in range(100):
        violations.add(f"filters[{i}].key" + "k" * 1000, "must not be empty " + "d" * 5000)
    status = violations.status()
    assert len(violations.violations) == MAX_VIOLATIONS and violations.omitted == 90
    assert "(and 97 more)" in status.details
    trailers = sum(len(key) + len(value) for key, value in status.trailing_metadata)
    assert trailers + len(status.details) < 8 * 1024  # a default client's metadata limit
    assert status.code.name == "INVALID_ARGUMENT"


def test_the_generator_refuses_a_huge_query_without_scanning_it() -> None:
    request = generator_pb2.GenerateRequest(query="q" * 5_000_001)
    violations = validate_generate(request, max_context_docs=50)
    [(field, description)] = violations.violations
    assert field == "query" and "at most 16384" in description


def test_the_generator_bounds_its_context_text() -> None:
    context = [
        common_pb2.ScoredDocument(document=common_pb2.Document(id=str(i), text="t" * 400_000))
        for i in range(3)
    ]
    request = generator_pb2.GenerateRequest(query="q", context=context)
    [(field, description)] = validate_generate(request, max_context_docs=50).violations
    assert field == "context" and "1200000 characters" in description

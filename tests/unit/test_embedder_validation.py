"""EmbedderService request validation: every bad field is named."""

from __future__ import annotations

from embedder_svc.service import MAX_TEXT_VIOLATIONS, validate


def fields(texts: list[str], max_batch: int = 4, max_chars: int = 10) -> list[str]:
    return [field for field, _ in validate(texts, max_batch, max_chars).violations]


def test_valid_batch_has_no_violations() -> None:
    assert fields(["a", "b c", "0123456789"]) == []


def test_empty_batch_names_texts() -> None:
    assert fields([]) == ["texts"]


def test_too_many_texts_names_texts() -> None:
    assert fields(["a"] * 5) == ["texts"]


def test_blank_and_oversized_texts_are_named_by_index() -> None:
    texts = ["ok", "", " \t\n", "x" * 11, "fine"]
    assert fields(texts, max_batch=10) == ["texts[1]", "texts[2]", "texts[3]"]


def test_per_text_violations_are_capped_so_the_error_fits_in_trailers() -> None:
    found = fields([""] * 1000, max_batch=2000)
    assert len(found) == MAX_TEXT_VIOLATIONS
    assert found[0] == "texts[0]"

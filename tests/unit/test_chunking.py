"""Chunking: structure first (headings, paragraphs, code fences), then size with overlap."""

from __future__ import annotations

import itertools
import re
import time

import pytest

from gateway.chunking import chunk_text, estimate_tokens, title_of
from gateway.config import ChunkingConfig
from servicekit.settings import RuleViolation


def big_markdown(target_chars: int = 200_000) -> str:
    parts = ["# Operations handbook\n"]
    section = 0
    while sum(map(len, parts)) < target_chars:
        parts.append(f"\n## Area {section}\n")
        for sub in range(3):
            parts.append(f"\n### Topic {section}.{sub}\n")
            for para in range(4):
                words = " ".join(f"w{section}_{sub}_{para}_{n}" for n in range(40))
                parts.append(f"\n{words}.\n")
        section += 1
    return "".join(parts)


def words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def test_a_200_kb_document_is_chunked_fast_within_size_and_loses_no_text() -> None:
    text = big_markdown()
    started = time.perf_counter()
    pieces = chunk_text(text, 256, 40)
    assert time.perf_counter() - started < 0.5
    assert len(pieces) > 100
    assert all(estimate_tokens(p.text) <= 256 for p in pieces)
    # No text lost: every word of the document is in some chunk, in document order.
    seen: set[str] = set()
    for p in pieces:
        seen.update(words(p.text))
    assert set(words(text)) <= seen


def test_headings_give_each_chunk_its_path() -> None:
    text = "# Guide\n\nIntro.\n\n## Install\n\n### From source\n\nRun make.\n\n## Use\n\nAsk.\n"
    pieces = chunk_text(text, 256, 40)
    by_text = {p.text.split("\n")[-1]: p.heading_path for p in pieces}
    assert by_text["Intro."] == ("Guide",)
    assert by_text["Run make."] == ("Guide", "Install", "From source")
    assert by_text["Ask."] == ("Guide", "Use")
    # A heading with nothing under it stays with the section that follows.
    assert not any(p.text.strip() == "## Install" for p in pieces)


def test_a_long_section_is_cut_by_size_with_overlap() -> None:
    body = " ".join(f"word{n}" for n in range(400))
    pieces = chunk_text(f"# Long\n\n{body}\n", 64, 16)
    assert len(pieces) > 3
    for before, after in itertools.pairwise(pieces):
        tail = words(before.text)[-3:]
        assert " ".join(tail) in after.text, "the next chunk repeats the end of the last"
    assert all(estimate_tokens(p.text) <= 64 for p in pieces)


def test_a_code_fence_that_fits_is_kept_whole() -> None:
    fence = "```sh\nmake install\n\nmake test\n```"
    text = "# Build\n\n" + "Some prose here. " * 20 + "\n\n" + fence + "\n\nAfter.\n"
    pieces = chunk_text(text, 64, 8)
    assert any(fence in p.text for p in pieces)


def test_form_feeds_mark_pages() -> None:
    text = "Page one text.\fPage two text.\n\nMore on two.\fPage three."
    pieces = chunk_text(text, 5, 0)
    pages = {p.text: p.page for p in pieces}
    assert pages == {"Page one text.": 1, "Page two text.": 2, "More on two.": 2, "Page three.": 3}
    assert all("\f" not in p.text for p in pieces)
    assert chunk_text("no pages", 16, 2)[0].page == 0


def test_the_title_is_metadata_then_first_heading_then_file_name() -> None:
    assert title_of("a/b.md", "# Heading\n\ntext", {"title": "Given"}) == "Given"
    assert title_of("a/b.md", "intro\n\n## Heading\n\ntext", {}) == "Heading"
    assert title_of("docs/notes.txt", "plain text", {}) == "notes.txt"


def test_overlap_must_be_smaller_than_the_chunk() -> None:
    with pytest.raises(RuleViolation, match="chunk_overlap_tokens"):
        ChunkingConfig(chunk_size_tokens=64, chunk_overlap_tokens=64)

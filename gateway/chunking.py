"""Cuts a document into chunks: by structure first, then by size with overlap.

Structure: Markdown headings (`#` .. `######`) start a new section and set the heading path
of the chunks under them; blank lines separate paragraphs; a fenced code block (``` or ~~~)
is one block, kept whole when it fits in a chunk. A form feed ("\\f", how the CLI joins a
PDF's pages) is a page break: each chunk records the 1-based page it starts on.

Size: a section that fits in `size` estimated tokens is one chunk. A longer one is packed
paragraph by paragraph; a paragraph longer than a chunk is cut between words. Every chunk
after the first of a section starts with the last `overlap` tokens of the one before, so a
sentence cut at a boundary is whole in one of them.

Tokens are estimated, not counted: one token per 4 characters, rounded up (close to
English BPE tokenizers' average, and it needs no tokenizer download). Pure functions.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

CHARS_PER_TOKEN = 4
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_WORD = re.compile(r"\S+\s*")


def estimate_tokens(text: str) -> int:
    """Estimated tokens in `text`: characters / 4, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Piece:
    """One chunk's text and where it sits in the document."""

    text: str
    heading_path: tuple[str, ...]
    page: int  # 1-based page where the chunk starts; 0 when the text has no page breaks


@dataclass(frozen=True)
class _Block:
    text: str
    heading_path: tuple[str, ...]
    page: int
    heading: bool = False


def title_of(document_id: str, text: str, metadata: Mapping[str, str]) -> str:
    """The metadata's title, else the first Markdown heading, else the id's file name."""
    if metadata.get("title", "").strip():
        return metadata["title"].strip()
    for block in _blocks(text):
        if block.heading:
            return block.heading_path[-1]
    return posixpath.basename(document_id.rstrip("/")) or document_id


def _blocks(text: str) -> Iterator[_Block]:
    """Paragraphs, headings and code fences, each with its heading path and page."""
    paged = "\f" in text
    page = 1
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    start_page = page
    fence = ""

    def heading_path() -> tuple[str, ...]:
        return tuple(title for _, title in path)

    def flush() -> Iterator[_Block]:
        body = "\n".join(lines).strip()
        lines.clear()
        if body:
            yield _Block(body, heading_path(), start_page if paged else 0)

    # A page break is also a paragraph break.
    for raw in text.replace("\f", "\n\f\n").split("\n"):
        breaks = raw.count("\f")
        line = raw.replace("\f", "")
        if fence:
            lines.append(line)
            if line.strip().startswith(fence):
                fence = ""
                yield from flush()
            page += breaks
            continue
        if breaks:
            yield from flush()
            page += breaks
        if not lines:
            start_page = page
        if match := _FENCE.match(line):
            yield from flush()
            start_page = page
            fence = match.group(1)[0] * 3
            lines.append(line)
            continue
        if match := _HEADING.match(line):
            yield from flush()
            level, title = len(match.group(1)), match.group(2).strip()
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, title))
            yield _Block(line.strip(), heading_path(), page if paged else 0, heading=True)
            continue
        if not line.strip():
            yield from flush()
            continue
        lines.append(line)
    yield from flush()


def _split_words(text: str, max_chars: int) -> list[str]:
    """Cuts text between words into parts of at most max_chars (a longer word is cut)."""
    parts: list[str] = []
    current = ""
    for word in _WORD.findall(text):
        while len(word) > max_chars:
            if current:
                parts.append(current.strip())
                current = ""
            parts.append(word[:max_chars])
            word = word[max_chars:]
        if len(current) + len(word.rstrip()) > max_chars and current:
            parts.append(current.strip())
            current = ""
        current += word
    if current.strip():
        parts.append(current.strip())
    return parts


def _tail(text: str, max_chars: int) -> str:
    """The last words of text, at most max_chars."""
    if max_chars <= 0:
        return ""
    if len(text) <= max_chars:
        return text
    cut = text[-max_chars:]
    space = cut.find(" ")
    return cut[space + 1 :] if 0 <= space < len(cut) - 1 else cut


def _sections(blocks: Iterator[_Block]) -> Iterator[list[_Block]]:
    """Consecutive blocks under the same heading (a heading starts a new section)."""
    current: list[_Block] = []
    for block in blocks:
        only_headings = all(b.heading for b in current)
        new = block.heading or block.heading_path != current[-1].heading_path if current else False
        if new and not only_headings:
            yield current
            current = []
        current.append(block)
    if current:
        yield current


def _pack(section: list[_Block], size_chars: int, overlap_chars: int) -> Iterator[Piece]:
    path = section[-1].heading_path
    whole = "\n\n".join(b.text for b in section)
    if len(whole) <= size_chars:
        yield Piece(whole, path, section[0].page)
        return
    budget = size_chars - overlap_chars - 2  # room for the overlap and its separator
    # A heading stays with the text that follows it.
    blocks: list[tuple[str, int]] = []
    pending = ""
    for block in section:
        if block.heading:
            pending = f"{pending}\n\n{block.text}" if pending else block.text
            continue
        text = f"{pending}\n\n{block.text}" if pending else block.text
        blocks.append((text, section[0].page if pending else block.page))
        pending = ""
    if pending:
        blocks.append((pending, section[0].page))
    current = ""
    page = blocks[0][1]
    previous = ""
    for text, block_page in blocks:
        joined = f"{current}\n\n{text}" if current else text
        if len(joined) <= budget:
            current = joined if current else text
            page = page if current != text else block_page
            continue
        if current and len(text) <= budget:
            # The block fits a chunk of its own: start one rather than cut it.
            yield Piece(_joined(previous, current), path, page)
            previous = _tail(current, overlap_chars)
            current, page = text, block_page
            continue
        # Too long for any chunk: fill the current one, then cut the rest between words.
        room = budget - len(current) - 2 if current else budget
        words = _WORD.findall(text)
        head = ""
        while words and len(head) + len(words[0].rstrip()) <= room:
            head += words.pop(0)
        if head.strip():
            current = f"{current}\n\n{head.strip()}" if current else head.strip()
        if current:
            yield Piece(_joined(previous, current), path, page)
            previous = _tail(current, overlap_chars)
        parts = _split_words("".join(words), budget)
        for part in parts[:-1]:
            yield Piece(_joined(previous, part), path, block_page)
            previous = _tail(part, overlap_chars)
        current, page = (parts[-1], block_page) if parts else ("", block_page)
    if current:
        yield Piece(_joined(previous, current), path, page)


def _joined(overlap: str, body: str) -> str:
    return f"{overlap}\n\n{body}" if overlap else body


def chunk_text(text: str, size_tokens: int, overlap_tokens: int) -> list[Piece]:
    """The document's chunks in order; each within size_tokens estimated tokens."""
    if overlap_tokens >= size_tokens:
        raise ValueError("overlap_tokens must be smaller than size_tokens")
    size_chars = size_tokens * CHARS_PER_TOKEN
    overlap_chars = overlap_tokens * CHARS_PER_TOKEN
    pieces: list[Piece] = []
    for section in _sections(_blocks(text)):
        pieces += _pack(section, size_chars, overlap_chars)
    return pieces

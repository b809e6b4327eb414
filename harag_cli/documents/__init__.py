"""Turning a user's files into documents: readers per format, front matter, the folder walk.

collected = collect([Path("docs"), Path("notes.md")])
collected.documents   # Document messages, ids relative to the path given
collected.failures    # one Failure per file or JSONL line that could not be read
collected.skipped     # (path, reason) the walk passed over
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harag.v1 import common_pb2
from harag_cli.documents.readers import (
    READERS,
    SUFFIXES,
    Failure,
    ReadError,
    read_jsonl,
    read_markdown,
)
from harag_cli.documents.walk import walk

__all__ = ["SUFFIXES", "Collected", "Failure", "collect", "read_file", "sample_corpus"]

SAMPLE_CORPUS = Path(__file__).resolve().parent.parent / "sample_corpus"


@dataclass
class Collected:
    documents: list[common_pb2.Document] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skipped_by_reason(self) -> Counter[str]:
        return Counter(reason for _, reason in self.skipped)


def read_file(path: Path, doc_id: str) -> list[common_pb2.Document | Failure]:
    """The documents of one file (several for JSONL), or its Failure; never raises for a bad
    file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [Failure(doc_id, f"cannot read ({exc.strerror or exc})")]
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return list(read_jsonl(data, doc_id, path.name))
        return [READERS[suffix](data, doc_id, path.name)]
    except ReadError as exc:
        return [Failure(doc_id, str(exc))]
    except RecursionError:
        return [Failure(doc_id, "too deeply nested to read")]


def collect(paths: list[Path]) -> Collected:
    """Every document under `paths`; a file, line or path that fails does so alone."""
    found = walk(paths)
    out = Collected(failures=list(found.failures), skipped=list(found.skipped))
    seen: dict[str, str] = {}
    for item in found.files:
        for result in read_file(item.path, item.doc_id):
            if isinstance(result, Failure):
                out.failures.append(result)
            elif result.id in seen:
                out.failures.append(
                    Failure(str(item.path), f"duplicate id {result.id!r} (also {seen[result.id]})")
                )
            else:
                seen[result.id] = str(item.path)
                out.documents.append(result)
    return out


def sample_corpus() -> list[common_pb2.Document]:
    """The bundled sample corpus; its ids stay the file stems ("02-chunking-strategies")
    that the known questions and tests name."""
    return [
        read_markdown(path.read_bytes(), path.stem, path.name)
        for path in sorted(SAMPLE_CORPUS.glob("*.md"))
    ]

"""Reads documents from .md, .txt and .jsonl files for ingestion."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from harag.v1 import common_pb2

SUFFIXES = (".md", ".txt", ".jsonl")
SAMPLE_CORPUS = Path(__file__).resolve().parent / "sample_corpus"


class CorpusError(ValueError):
    """A file could not be read as documents."""


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given, directories expanded to their supported files, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES))
        elif path.suffix in SUFFIXES:
            files.append(path)
        else:
            raise CorpusError(f"{path}: unsupported file type (use {', '.join(SUFFIXES)})")
    return files


def _markdown(path: Path) -> common_pb2.Document:
    text = path.read_text(encoding="utf-8")
    metadata = {"source": path.name}
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        metadata["title"] = lines[0][2:].strip()
    for line in lines[1:4]:
        if line.lower().startswith("tags:"):
            metadata["tags"] = line.split(":", 1)[1].strip()
    return common_pb2.Document(id=path.stem, text=text.strip(), metadata=metadata)


def _jsonl(path: Path) -> Iterator[common_pb2.Document]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            metadata = {str(k): str(v) for k, v in (row.get("metadata") or {}).items()}
            yield common_pb2.Document(
                id=str(row.get("id", "")), text=str(row["text"]), metadata=metadata
            )
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
            raise CorpusError(
                f"{path}:{number}: not a {{'text': ...}} JSON object ({exc})"
            ) from None


def read_documents(paths: Iterable[Path]) -> list[common_pb2.Document]:
    documents: list[common_pb2.Document] = []
    for path in expand(paths):
        if path.suffix == ".jsonl":
            documents.extend(_jsonl(path))
        else:
            documents.append(_markdown(path))
    return documents


def sample_corpus() -> list[common_pb2.Document]:
    return read_documents([p for p in sorted(SAMPLE_CORPUS.glob("*.md"))])

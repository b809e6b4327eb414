"""One reader per file format. Each turns one file into Documents or raises ReadError with a
short reason (`cannot decode as UTF-8`, `not a PDF`); a JSONL file yields a result per line,
so one bad line fails alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from harag.v1 import common_pb2
from harag_cli.documents.metadata import Metadata, MetadataError, leading_lines, split_front_matter

MARKDOWN = (".md", ".markdown")
TEXT = (".txt",)
HTML = (".html", ".htm")
PDF = (".pdf",)
JSONL = (".jsonl",)
SUFFIXES = (*MARKDOWN, *TEXT, *HTML, *PDF, *JSONL)


class ReadError(ValueError):
    """A file (or one JSONL line) that cannot become a document; str() is the reason."""


@dataclass(frozen=True)
class Failure:
    """One file or JSONL line that failed, and why (`reason` is short and groupable)."""

    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}: line {self.line}" if self.line is not None else self.path
        return f"{where}: {self.reason}"


def supported(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def decode(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped); anything else is refused, never guessed."""
    if b"\x00" in data:
        raise ReadError("cannot decode as UTF-8 (binary file)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadError(
            f"cannot decode as UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _document(doc_id: str, text: str, metadata: Metadata, source: str) -> common_pb2.Document:
    text = text.strip()
    if not text:
        raise ReadError("empty document (no text)")
    values = {"source": source, **metadata.values}
    return common_pb2.Document(
        id=doc_id,
        text=text,
        metadata=values,
        metadata_values={k: common_pb2.MetadataValues(values=v) for k, v in metadata.lists.items()},
    )


def read_markdown(data: bytes, doc_id: str, name: str) -> common_pb2.Document:
    try:
        metadata, body = split_front_matter(decode(data))
    except MetadataError as exc:
        raise ReadError(str(exc)) from None
    title = leading_lines(body, metadata)
    if title and "title" not in metadata.values:
        metadata.values["title"] = title
    metadata.values.setdefault("title", name)
    return _document(doc_id, body, metadata, name)


class _HtmlText(HTMLParser):
    """Visible text of an HTML page: scripts, styles and templates dropped, headings kept as
    Markdown headings (so the chunker sees the structure), <title> remembered."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    BLOCKS = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "tr",
            "section",
            "article",
            "header",
            "footer",
            "pre",
            "blockquote",
            "ul",
            "ol",
            "table",
            "hr",
            "main",
            "nav",
            "aside",
            "dd",
            "dt",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skip += 1
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCKS:
            self.parts.append("\n\n" if tag == "p" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6", "p"):
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)

    def text(self) -> str:
        lines = [" ".join(line.split()) for line in "".join(self.parts).splitlines()]
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):
                out.append(line)
        return "\n".join(out).strip()


def read_html(data: bytes, doc_id: str, name: str) -> common_pb2.Document:
    parser = _HtmlText()
    parser.feed(decode(data))
    parser.close()
    metadata = Metadata()
    metadata.values["title"] = " ".join(parser.title.split()) or name
    return _document(doc_id, parser.text(), metadata, name)


def read_pdf(data: bytes, doc_id: str, name: str) -> common_pb2.Document:
    """Text per page, pages joined with a form feed ("\\f") so the chunker knows pages."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise ReadError("not a PDF")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ReadError("encrypted PDF (decrypt it first)")
        pages = [page.extract_text() or "" for page in reader.pages]
        info_title = reader.metadata.title if reader.metadata else None
    except ReadError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ReadError(f"not a readable PDF ({type(exc).__name__})") from None
    if not any(p.strip() for p in pages):
        raise ReadError("PDF has no extractable text (scanned images?)")
    metadata = Metadata()
    metadata.values["title"] = (info_title or "").strip() or name
    metadata.values["pages"] = str(len(pages))
    return _document(doc_id, "\f".join(p.strip() for p in pages), metadata, name)


def read_text(data: bytes, doc_id: str, name: str) -> common_pb2.Document:
    text = decode(data)
    metadata = Metadata()
    title = leading_lines(text, metadata)
    metadata.values.setdefault("title", title or name)
    return _document(doc_id, text, metadata, name)


def read_jsonl(data: bytes, file_id: str, name: str) -> list[common_pb2.Document | Failure]:
    """One {"id", "text", "metadata"} object per line; each bad line is a Failure of its own.
    A line without an id gets `<file id>:<line>`."""
    text = decode(data)
    out: list[common_pb2.Document | Failure] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(_jsonl_line(line, number, file_id, name))
        except ReadError as exc:
            out.append(Failure(file_id, str(exc), number))
    return out


def _jsonl_line(line: str, number: int, file_id: str, name: str) -> common_pb2.Document:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ReadError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise ReadError("not a JSON object")
    unknown = sorted(set(row) - {"id", "text", "metadata"})
    if unknown:
        raise ReadError(f"unknown keys {', '.join(unknown)} (use id, text, metadata)")
    text = row.get("text")
    if not isinstance(text, str):
        raise ReadError('"text" must be a string')
    doc_id = row.get("id", f"{file_id}:{number}")
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or str(doc_id) == "":
        raise ReadError('"id" must be a non-empty string')
    raw = row.get("metadata") or {}
    if not isinstance(raw, dict):
        raise ReadError('"metadata" must be an object')
    metadata = Metadata()
    try:
        for key, value in raw.items():
            metadata.set(key, value, "metadata.")
    except MetadataError as exc:
        raise ReadError(str(exc)) from None
    metadata.values.setdefault("title", str(doc_id))
    return _document(str(doc_id), text, metadata, name)


Reader = Callable[[bytes, str, str], common_pb2.Document]
READERS: dict[str, Reader] = {
    **{s: read_markdown for s in MARKDOWN},
    **{s: read_text for s in TEXT},
    **{s: read_html for s in HTML},
    **{s: read_pdf for s in PDF},
}

"""Metadata at the top of a Markdown or text file: YAML front matter between `---` lines, and
`key: value` lines at the very top or right under the first `# Title` heading.

List-like values become multi-valued metadata (`Document.metadata_values`): a YAML list, or a
comma-separated value of a key in LIST_KEYS (`tags: rag, retrieval`). Nothing is joined into
one string, so a filter `tags=rag` matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

LIST_KEYS = frozenset(
    {"tags", "tag", "keywords", "categories", "category", "labels", "authors", "aliases"}
)
_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,40}):[ \t]+(\S.*)$")
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)


class MetadataError(ValueError):
    """Front matter that cannot be read."""


@dataclass
class Metadata:
    """Single values and multi-valued keys, as the Document message holds them."""

    values: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)

    def set(self, key: str, value: object, where: str = "") -> None:
        """One key from any source: a list, a comma-separated list-like value, or a scalar."""
        key = key.strip()
        if isinstance(value, (list, tuple)):
            items = []
            for item in value:
                if isinstance(item, (dict, list, tuple)) or item is None:
                    raise MetadataError(f"{where}{key}: list items must be strings or numbers")
                items.append(_scalar(item))
            self.lists[key] = [i for i in items if i]
            self.values.pop(key, None)
        elif isinstance(value, dict):
            raise MetadataError(f"{where}{key}: must be a string or a list of strings")
        elif value is None:
            return
        else:
            text = _scalar(value)
            if key.lower() in LIST_KEYS and "," in text:
                self.lists[key] = [v.strip() for v in text.split(",") if v.strip()]
                self.values.pop(key, None)
            else:
                self.values[key] = text
                self.lists.pop(key, None)


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def split_front_matter(text: str) -> tuple[Metadata, str]:
    """YAML front matter (if the text starts with `---`) and the text after it."""
    metadata = Metadata()
    match = _FRONT.match(text)
    if not match:
        return metadata, text
    try:
        loaded = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 2}" if mark is not None else ""
        raise MetadataError(f"front matter is not valid YAML{at}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise MetadataError("front matter is not a YAML mapping of keys to values")
    for key, value in loaded.items():
        metadata.set(str(key), value, "front matter: ")
    return metadata, text[match.end() :]


def leading_lines(text: str, metadata: Metadata) -> str | None:
    """Reads `key: value` lines at the top of `text` (or right under its first `# Title`)
    into `metadata`; returns the title heading when there is one. The lines stay in the text
    (they are words a reader may search for). A block counts only when every one of its lines
    is `key: value`, so a first paragraph starting "Note: ..." is left alone."""
    lines = text.lstrip("\n").splitlines()
    title = None
    start = 0
    if lines and lines[0].startswith("# "):
        title = lines[0][2:].strip() or None
        start = 1
    block = []
    for line in lines[start:]:
        if not line.strip():
            break
        block.append(line)
    matches = [_LINE.match(line) for line in block]
    if block and len(block) <= 8 and all(matches):
        for m in matches:
            assert m is not None
            if m.group(1) not in metadata.values and m.group(1) not in metadata.lists:
                metadata.set(m.group(1), m.group(2).strip())
    return title

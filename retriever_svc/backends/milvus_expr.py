"""Milvus boolean expressions built from caller-supplied values, every literal escaped.

Milvus 2.3 has no bound parameters in expressions (expression templates came in 2.5), so
every string that reaches an expression is written as a double-quoted literal by
`json.dumps`: it escapes the quote, the backslash and control characters exactly as the
expression grammar's string literals expect, so a value can never close its literal and
add a clause (tests/contract/test_milvus_backend.py tries).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from retriever_svc.filters import Filter

# The JSON field holding each entry's filterable metadata: {key: [value, ...]}, both the
# single-valued `metadata` and the multi-valued `metadata_values`.
META_FIELD = "meta"


def literal(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def string_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(literal(v) for v in sorted(values)) + "]"


def filter_expression(filters: Sequence[Filter]) -> str:
    """AND of "one of the entry's values for key is one of values" ("" when no filters)."""
    return " and ".join(
        f"json_contains_any({META_FIELD}[{literal(f.key)}], {string_list(f.values)})"
        for f in sorted(filters, key=lambda f: f.key)
    )


def field_in(field: str, values: Iterable[str]) -> str:
    return f"{field} in {string_list(values)}"


def filter_values(metadata: dict[str, str], multi: dict[str, list[str]]) -> dict[str, list[str]]:
    """What `meta` holds for an entry: each key's values from both metadata maps."""
    merged: dict[str, list[str]] = {key: [value] for key, value in metadata.items()}
    for key, values in multi.items():
        merged.setdefault(key, []).extend(v for v in values if v not in merged[key])
    return merged

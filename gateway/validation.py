"""Checks public requests; every bad field is reported at once as a BadRequest."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config import QueryConfig
from harag.v1 import common_pb2
from servicekit.errors import FieldViolations
from servicekit.limits import DocumentLimits

MAX_TOP_K = 50
MAX_FILTERS = 16
MAX_FILTER_VALUES = 64
# A filter is key = any of values; a key holding one of these came from an operator the API
# does not have (e.g. "tags!=rag" read as key "tags!"), so it is refused, not matched.
OPERATOR_CHARS = frozenset("!<>~=*")


def check_query(
    query: str,
    has_top_k: bool,
    top_k: int,
    filters: Sequence[common_pb2.MetadataFilter],
    cfg: QueryConfig,
    max_value_chars: int = DocumentLimits.max_metadata_value_chars,
) -> FieldViolations:
    """`max_value_chars`: the longest filter key or value (no stored metadata is longer)."""
    violations = FieldViolations()
    violations.check(bool(query.strip()), "query", "must not be empty")
    violations.check(
        len(query) <= cfg.max_query_chars,
        "query",
        f"is {len(query)} characters; at most {cfg.max_query_chars} allowed",
    )
    if has_top_k:
        violations.check(
            1 <= top_k <= MAX_TOP_K, "top_k", f"is {top_k}; must be within 1..{MAX_TOP_K}"
        )
    violations.check(len(filters) <= MAX_FILTERS, "filters", f"at most {MAX_FILTERS} filters")
    for i, f in enumerate(filters):
        violations.check(bool(f.key), f"filters[{i}].key", "must not be empty")
        odd = sorted({c for c in f.key if c in OPERATOR_CHARS or c.isspace()})
        violations.check(
            not odd,
            f"filters[{i}].key",
            f"{f.key!r} contains {' '.join(repr(c) for c in odd)}: filters only test "
            "key = one of values (no !=, <, >, ~ or * operators; no spaces in a key)",
        )
        violations.check(bool(f.values), f"filters[{i}].values", "needs at least one value")
        violations.check(
            len(f.values) <= MAX_FILTER_VALUES,
            f"filters[{i}].values",
            f"has {len(f.values)} values; at most {MAX_FILTER_VALUES}",
        )
        violations.check(
            max([len(f.key), *map(len, f.values)]) <= max_value_chars,
            f"filters[{i}]",
            f"a key or value is longer than {max_value_chars} characters "
            "(setting max_metadata_value_chars)",
        )
        violations.check(
            all(v.strip() for v in f.values),
            f"filters[{i}].values",
            "must not contain an empty value",
        )
    return violations

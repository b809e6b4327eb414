"""Filters test key = one of values; an operator in a key is refused, naming the field."""

from __future__ import annotations

import pytest

from gateway.config import QueryConfig
from gateway.validation import check_query
from harag.v1 import common_pb2


def violations(*filters: common_pb2.MetadataFilter) -> list[tuple[str, str]]:
    return check_query("what?", False, 0, filters, QueryConfig()).violations


@pytest.mark.parametrize("key", ["tags!", "size>", "size<", "name~", "tag*", "a=b", "my tag"])
def test_a_key_with_an_operator_is_refused(key: str) -> None:
    found = violations(common_pb2.MetadataFilter(key=key, values=["rag"]))
    assert [f for f, _ in found] == ["filters[0].key"]
    assert repr(key) in found[0][1] and "operators" in found[0][1]


def test_empty_values_are_refused() -> None:
    found = violations(
        common_pb2.MetadataFilter(key="tags", values=["rag"]),
        common_pb2.MetadataFilter(key="tags", values=[""]),
        common_pb2.MetadataFilter(key="tags"),
    )
    assert [f for f, _ in found] == ["filters[1].values", "filters[2].values"]


def test_a_plain_key_passes() -> None:
    assert violations(common_pb2.MetadataFilter(key="source-type_2.x", values=["md"])) == []

"""Milvus filter expressions: values and keys only ever appear as escaped string literals."""

from __future__ import annotations

import json

from retriever_svc.backends.milvus_engine import collection_name
from retriever_svc.backends.milvus_expr import filter_expression, filter_values
from retriever_svc.filters import Filter


def test_filters_are_an_and_of_json_contains_any_sorted_by_key():
    expression = filter_expression(
        [Filter("team", frozenset({"maps"})), Filter("lang", frozenset({"fr", "en"}))]
    )
    assert expression == (
        'json_contains_any(meta["lang"], ["en", "fr"]) and '
        'json_contains_any(meta["team"], ["maps"])'
    )
    assert filter_expression([]) == ""


def test_a_hostile_value_stays_inside_its_literal():
    hostile = '"]) or id != "x\\'
    expression = filter_expression([Filter("k", frozenset({hostile}))])
    literal = expression.removeprefix('json_contains_any(meta["k"], [').removesuffix("])")
    assert json.loads(literal) == hostile  # one literal, decoding back to the value


def test_filter_values_merge_single_and_multi_valued_metadata():
    assert filter_values({"lang": "en"}, {"tags": ["a", "b"], "lang": ["en", "de"]}) == {
        "lang": ["en", "de"],
        "tags": ["a", "b"],
    }


def test_collection_names_are_valid_and_distinct_per_model():
    a = collection_name("harag_", "intfloat/e5-small-v2")
    b = collection_name("harag_", "intfloat/e5_small_v2")
    assert a != b and a.startswith("harag_m_intfloat_e5_small_v2_")
    assert all(c.isalnum() or c == "_" for c in a + b)

"""The dense query planner: which strategy a search gets from index size and filter selectivity."""

from __future__ import annotations

import pytest

from retriever_svc.backends.planner import PlannerSettings, Strategy, grow, plan

AUTO = PlannerSettings("auto", exact_below=20_000, filter_exact_max=5_000, expansion_search=64)


def test_small_indexes_and_exact_kind_scan_everything() -> None:
    assert plan(19_999, None, 10, AUTO).strategy == Strategy.SCAN_ALL
    assert plan(19_999, 15_000, 10, AUTO).strategy == Strategy.SCAN_MATCHES
    exact = PlannerSettings("exact")
    assert plan(10_000_000, None, 10, exact).strategy == Strategy.SCAN_ALL
    assert plan(10_000_000, 9_000_000, 10, exact).strategy == Strategy.SCAN_MATCHES


def test_unfiltered_search_of_a_large_index_uses_the_graph() -> None:
    chosen = plan(300_000, None, 10, AUTO)
    assert (chosen.strategy, chosen.fetch, chosen.expansion) == (Strategy.GRAPH, 10, 64)
    # efSearch is never below top_k, or the graph could not return top_k results.
    assert plan(300_000, None, 200, AUTO).expansion == 200
    # hnsw uses the graph whatever the size.
    assert plan(5, None, 3, PlannerSettings("hnsw")).strategy == Strategy.GRAPH


def test_a_selective_filter_scans_its_matches_exactly() -> None:
    assert plan(300_000, 3_000, 10, AUTO).strategy == Strategy.SCAN_MATCHES  # 1 %
    assert plan(300_000, 5_000, 10, AUTO).strategy == Strategy.SCAN_MATCHES
    assert plan(300_000, 0, 10, AUTO).strategy == Strategy.SCAN_MATCHES


def test_a_broad_filter_over_fetches_by_its_inverse_selectivity() -> None:
    chosen = plan(300_000, 150_000, 10, AUTO)  # half the index matches
    assert chosen.strategy == Strategy.GRAPH_FILTERED
    assert chosen.fetch == 40  # top_k / selectivity * 2 slack
    assert chosen.expansion == 64
    chosen = plan(300_000, 30_000, 10, AUTO)  # 10 %
    assert (chosen.fetch, chosen.expansion) == (200, 200)


def test_growing_fetches_four_times_more_then_scans_the_matches() -> None:
    chosen = plan(300_000, 150_000, 10, AUTO)
    sizes = []
    while chosen.strategy == Strategy.GRAPH_FILTERED:
        sizes.append(chosen.fetch)
        chosen = grow(chosen, 300_000, AUTO)
    assert sizes == [40, 160, 640, 2_560, 10_240, 40_960]
    # Past a quarter of the index a scan of the matches is cheaper than the graph.
    assert chosen.strategy == Strategy.SCAN_MATCHES


@pytest.mark.parametrize("matches", [6_000, 20_000])
def test_a_filter_that_would_fetch_most_of_the_index_scans_instead(matches: int) -> None:
    # 6,000 of 100,000 with top_k 50: fetch 1,667 is fine; top_k 500 would fetch 16,667.
    assert plan(100_000, matches, 50, AUTO).strategy == Strategy.GRAPH_FILTERED
    assert plan(100_000, matches, 50_000, AUTO).strategy == Strategy.SCAN_MATCHES

"""The dense query planner: how to answer one search over one model's index.

Like a database choosing between an index and a table scan, it uses the filter's
selectivity (the count of matching vectors, known exactly from the metadata postings):

- no filter: the HNSW graph; or a full exact scan when the index is small (dense_index auto,
  below ann_exact_below) or exact search is configured;
- a selective filter (at most ann_filter_exact_max matches): score just the matching
  vectors exactly (recall 1, cost proportional to the matches, not the index);
- a broad filter: the graph, over-fetching by the inverse selectivity (with slack) and
  keeping the matches; a search that comes back with fewer than top_k matches grows the
  fetch fourfold, and one that would fetch most of the index scans the matches instead.

Pure functions of counts and settings, so the choices are unit-tested without an index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Literal

IndexKind = Literal["auto", "exact", "hnsw"]
# Expected matches in an over-fetched result are fetch * selectivity; twice that absorbs
# clustering of the matches and the graph's own misses.
OVERFETCH_SLACK = 2.0
GROWTH = 4
# Fetching more than this share of the index costs more than scanning the matches.
MAX_FETCH_SHARE = 0.25


class Strategy(Enum):
    SCAN_ALL = "scan_all"  # exact, every vector
    SCAN_MATCHES = "scan_matches"  # exact, only the filter's matches
    GRAPH = "graph"  # approximate, unfiltered
    GRAPH_FILTERED = "graph_filtered"  # approximate, over-fetch then filter


@dataclass(frozen=True)
class PlannerSettings:
    kind: IndexKind = "auto"
    exact_below: int = 20_000
    filter_exact_max: int = 20_000
    expansion_search: int = 64


@dataclass(frozen=True)
class Plan:
    strategy: Strategy
    fetch: int = 0  # candidates to take from the graph (GRAPH, GRAPH_FILTERED)
    expansion: int = 0  # the graph search's candidate list (efSearch)


def plan(size: int, matches: int | None, top_k: int, settings: PlannerSettings) -> Plan:
    """How to find the top_k of an index of `size` vectors; `matches` is the number of them
    the filter lets through (None: no filter)."""
    if settings.kind == "exact" or (settings.kind == "auto" and size < settings.exact_below):
        return Plan(Strategy.SCAN_ALL if matches is None else Strategy.SCAN_MATCHES)
    if matches is None:
        return Plan(Strategy.GRAPH, top_k, max(settings.expansion_search, top_k))
    if matches <= settings.filter_exact_max:
        return Plan(Strategy.SCAN_MATCHES)
    fetch = math.ceil(top_k * size / matches * OVERFETCH_SLACK)
    return graph_filtered(fetch, size, settings)


def graph_filtered(fetch: int, size: int, settings: PlannerSettings) -> Plan:
    if fetch > size * MAX_FETCH_SHARE:
        return Plan(Strategy.SCAN_MATCHES)
    return Plan(Strategy.GRAPH_FILTERED, fetch, max(settings.expansion_search, fetch))


def grow(previous: Plan, size: int, settings: PlannerSettings) -> Plan:
    """The next plan after a filtered graph search found fewer than top_k matches."""
    return graph_filtered(previous.fetch * GROWTH, size, settings)

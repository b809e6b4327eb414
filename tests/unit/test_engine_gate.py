"""QueryFirstGate: a query waits for at most one slice of a passage batch, never the batch."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from embedder_svc.backends.engine_gate import QueryFirstGate


def test_a_query_overtakes_the_rest_of_a_passage_batch() -> None:
    gate = QueryFirstGate()
    order: list[str] = []
    first_slice_running = threading.Event()
    query_waiting = threading.Event()

    def passages(part: Sequence[str]) -> int:
        order.append(f"passages {part[0]}-{part[-1]}")
        if part[0] == "p0":
            first_slice_running.set()
            assert query_waiting.wait(10)
            # Give the query thread time to block on the gate (it cannot get in while busy).
            while gate._urgent_waiting == 0:
                threading.Event().wait(0.001)
        return len(part)

    def query(part: Sequence[str]) -> int:
        order.append("query")
        return len(part)

    texts = [f"p{i}" for i in range(6)]
    results: list[list[int]] = []
    ingest = threading.Thread(
        target=lambda: results.append(gate.run_sliced(passages, texts, False, 2))
    )
    ingest.start()
    assert first_slice_running.wait(10)
    asker = threading.Thread(target=lambda: results.append(gate.run_sliced(query, ["q"], True)))
    query_waiting.set()
    asker.start()
    ingest.join(10)
    asker.join(10)
    assert order == ["passages p0-p1", "query", "passages p2-p3", "passages p4-p5"]
    assert sorted(results) == [[1], [2, 2, 2]]


def test_a_query_runs_whole_and_passages_in_slices() -> None:
    gate = QueryFirstGate()
    seen: list[int] = []

    def run(part: Sequence[str]) -> int:
        seen.append(len(part))
        return len(part)

    assert gate.run_sliced(run, ["a"] * 20, urgent=True, slice_size=8) == [20]
    assert gate.run_sliced(run, ["a"] * 20, urgent=False, slice_size=8) == [8, 8, 4]

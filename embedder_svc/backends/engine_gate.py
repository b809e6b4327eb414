"""One CPU-bound model engine shared by queries and ingest batches, queries first.

The engine runs one inference at a time (it parallelises a batch over the cores itself).
Ingest sends passages in batches that take seconds on a small CPU; a query arriving behind
one would wait for all of it, and the gateway would hedge it to the hashed fallback (or its
breaker would see slow calls). So a passage batch is cut into small slices, and between two
slices a waiting query goes first: a query waits for at most one slice, never for a batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

# Texts per slice of a passage batch: ~0.2 s of e5-small on one core for 700-character
# chunks, the most a query then waits; a smaller slice costs throughput (per-call overhead).
PASSAGE_SLICE = 8


class QueryFirstGate:
    """A lock where high-priority holders (queries) overtake waiting low-priority ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0

    @contextmanager
    def hold(self, urgent: bool) -> Iterator[None]:
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
                try:
                    self._cond.wait_for(lambda: not self._busy)
                finally:
                    self._urgent_waiting -= 1
            else:
                self._cond.wait_for(lambda: not self._busy and not self._urgent_waiting)
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def run_sliced(
        self,
        run: Callable[[Sequence[str]], T],
        texts: Sequence[str],
        urgent: bool,
        slice_size: int = PASSAGE_SLICE,
    ) -> list[T]:
        """`run` over `texts`: whole when urgent, else slice by slice, each slice taking the
        gate anew so urgent callers get in between."""
        if urgent:
            with self.hold(True):
                return [run(texts)]
        results = []
        for start in range(0, len(texts), slice_size):
            with self.hold(False):
                results.append(run(texts[start : start + slice_size]))
        return results

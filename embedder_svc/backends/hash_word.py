"""The fallback embedder: signed hashed word unigrams only, small and cheap.

Coarser than the primary (no word order, no subword similarity) but it keeps dense
retrieval alive in its own vector space when the primary embedder is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from embedder_svc.backends.hashing import (
    content_words,
    l2_normalised,
    signed_tf_vector,
    stable_hash,
    words,
)

DEFAULT_DIMENSION = 128
_WORD_SALT = b"hash-word/w1"


@lru_cache(maxsize=32768)
def _word_hash(word: str) -> int:
    return stable_hash(word, _WORD_SALT)


class HashWordEmbedder:
    """Deterministic across processes, runs and machines; thread-safe (no mutable state)."""

    def __init__(self, dimension: int = DEFAULT_DIMENSION) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        self._dimension = dimension

    @property
    def model(self) -> str:
        return f"hash-word-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = content_words(words(text))
            hashes = np.fromiter(
                (_word_hash(t) for t in tokens), dtype=np.uint64, count=len(tokens)
            )
            out[row] = l2_normalised(signed_tf_vector(hashes, self._dimension))
        return out

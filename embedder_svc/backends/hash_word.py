"""The fallback embedder: signed hashed word unigrams only, small and cheap.

Coarser than the primary (no word order, no subword similarity) but it keeps dense
retrieval alive in its own vector space when the primary embedder is down.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from embedder_svc.backends.hashing import (
    HashedEmbedder,
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


class HashWordEmbedder(HashedEmbedder):
    family = "hash-word"

    def __init__(self, dimension: int = DEFAULT_DIMENSION) -> None:
        super().__init__(dimension)

    def _embed_one(self, text: str) -> np.ndarray:
        tokens = content_words(words(text))
        hashes = np.fromiter((_word_hash(t) for t in tokens), dtype=np.uint64, count=len(tokens))
        return l2_normalised(signed_tf_vector(hashes, self._dimension))

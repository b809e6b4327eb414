"""The primary embedder: signed hashed word uni/bi-grams plus character n-grams.

Word unigrams carry the topic, bigrams a little word order ("circuit breaker" is not
"breaker circuit"), and character 3..5-grams inside word boundaries make related word
forms ("retriever", "retrieval") and typos land near each other — what a real subword
model gives, without a model download.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import pairwise

import numpy as np

from embedder_svc.backends.hashing import (
    HashedEmbedder,
    content_words,
    hash_all,
    l2_normalised,
    signed_tf_vector,
    stable_hash,
    words,
)

DEFAULT_DIMENSION = 384
CHAR_NGRAM_SIZES = (3, 4, 5)
# Each family is normalised on its own before weighting: a 10-word text has ~10 unigrams
# but ~100 character n-grams, which would otherwise drown the words out.
WORD_WEIGHT = 1.0
BIGRAM_WEIGHT = 0.5
CHAR_WEIGHT = 0.8
# Changing any salt (or the features) changes the vector space: bump it with the model id.
_WORD_SALT = b"hash-ngram/w1"
_BIGRAM_SALT = b"hash-ngram/b1"
_CHAR_SALT = b"hash-ngram/c1"


def char_ngrams(word: str) -> list[str]:
    """Character n-grams of `<word>`; the angle brackets mark the word's start and end."""
    padded = f"<{word}>"
    return [padded[i : i + n] for n in CHAR_NGRAM_SIZES for i in range(len(padded) - n + 1)]


# Word frequencies are Zipfian, so caching per distinct word removes most hashing work.
@lru_cache(maxsize=32768)
def _word_hash(word: str) -> int:
    return stable_hash(word, _WORD_SALT)


@lru_cache(maxsize=32768)
def _char_hashes(word: str) -> np.ndarray:
    hashes = hash_all(char_ngrams(word), _CHAR_SALT)
    hashes.setflags(write=False)  # shared between callers via the cache
    return hashes


@lru_cache(maxsize=65536)
def _bigram_hash(bigram: str) -> int:
    return stable_hash(bigram, _BIGRAM_SALT)


class HashNgramEmbedder(HashedEmbedder):
    family = "hash-ngram"

    def __init__(self, dimension: int = DEFAULT_DIMENSION) -> None:
        super().__init__(dimension)

    def _embed_one(self, text: str) -> np.ndarray:
        tokens = content_words(words(text))
        if not tokens:
            return np.zeros(self._dimension)
        dim = self._dimension
        unigrams = np.fromiter((_word_hash(t) for t in tokens), dtype=np.uint64, count=len(tokens))
        bigrams = np.fromiter(
            (_bigram_hash(f"{a} {b}") for a, b in pairwise(tokens)),
            dtype=np.uint64,
            count=len(tokens) - 1,
        )
        chars = np.concatenate([_char_hashes(t) for t in tokens])
        combined = (
            WORD_WEIGHT * l2_normalised(signed_tf_vector(unigrams, dim))
            + BIGRAM_WEIGHT * l2_normalised(signed_tf_vector(bigrams, dim))
            + CHAR_WEIGHT * l2_normalised(signed_tf_vector(chars, dim))
        )
        return l2_normalised(combined)

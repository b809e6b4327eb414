"""The hashed-feature embedders: determinism, normalisation, similarity, model identity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedder_svc.backends import create
from embedder_svc.backends.hash_ngram import HashNgramEmbedder, char_ngrams
from embedder_svc.backends.hash_word import HashWordEmbedder

REPO = Path(__file__).resolve().parents[2]
IMPLS = ("primary", "fallback")
TEXT = "Circuit breakers stop calling a failing dependency; retries back off with jitter."

# Prints the vector of TEXT as hex bytes, from a fresh interpreter.
_PRINT_VECTOR = (
    "import sys; from embedder_svc.backends import create; "
    "print(create(sys.argv[1]).embed([sys.argv[2]])[0].tobytes().hex())"
)


def _vector_in_subprocess(impl: str, text: str, hash_seed: str) -> bytes:
    # A different PYTHONHASHSEED per process would expose any use of Python's salted hash().
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", _PRINT_VECTOR, impl, text],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return bytes.fromhex(out.stdout.strip())


@pytest.mark.parametrize("impl", IMPLS)
def test_same_text_gives_identical_vector_in_separate_processes(impl: str) -> None:
    first = _vector_in_subprocess(impl, TEXT, "1")
    second = _vector_in_subprocess(impl, TEXT, "2")
    here = create(impl).embed([TEXT])[0].tobytes()
    assert first == second == here


@pytest.mark.parametrize("impl", IMPLS)
def test_batch_rows_match_single_embeddings_in_order(impl: str) -> None:
    embedder = create(impl)
    texts = ["alpha beta gamma", TEXT, "delta epsilon"]
    batch = embedder.embed(texts)
    assert batch.dtype == np.float32
    assert batch.shape == (3, embedder.dimension)
    for row, text in zip(batch, texts, strict=True):
        assert np.array_equal(row, embedder.embed([text])[0])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("text", [TEXT, "x", "the", "Ünïcödé wörds ünd ÜMLAUTS", "a " * 3000])
def test_vectors_have_unit_length(impl: str, text: str) -> None:
    vector = create(impl).embed([text])[0]
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("text", ["", "   ", "!!! ??? ...", "—"])
def test_text_without_features_gives_zero_vector_not_nan(impl: str, text: str) -> None:
    vector = create(impl).embed([text])[0]
    assert not np.isnan(vector).any()
    assert not vector.any()


@pytest.mark.parametrize("impl", IMPLS)
def test_similar_texts_are_closer_than_unrelated_texts(impl: str) -> None:
    anchor, similar, unrelated = create(impl).embed(
        [
            "The circuit breaker opens when the failure rate crosses the threshold.",
            "When failures cross the threshold rate, the circuit breaker trips open.",
            "Bananas and mangoes ripen quickly in warm kitchens during summer.",
        ]
    )
    assert float(anchor @ similar) > float(anchor @ unrelated) + 0.2


def test_primary_matches_related_word_forms_through_character_ngrams() -> None:
    query, related, other = create("primary").embed(["retriever", "retrieval", "breakfast"])
    assert float(query @ related) > float(query @ other) + 0.2


def test_stopwords_do_not_make_unrelated_questions_similar() -> None:
    a, b = create("primary").embed(["what is a retry budget", "what is a vector database"])
    c = create("primary").embed(["retry budget"])[0]
    assert float(a @ c) > float(a @ b)


def test_primary_and_fallback_are_different_models() -> None:
    primary, fallback = create("primary"), create("fallback")
    assert (primary.model, primary.dimension) == ("hash-ngram-384", 384)
    assert (fallback.model, fallback.dimension) == ("hash-word-128", 128)


@pytest.mark.parametrize(
    ("impl", "model"), [("primary", "hash-ngram-512"), ("fallback", "hash-word-512")]
)
def test_configured_dimension_is_part_of_the_model_id(impl: str, model: str) -> None:
    embedder = create(impl, 512)
    assert embedder.model == model
    assert embedder.embed([TEXT]).shape == (1, 512)


def test_backend_names_are_accepted_and_unknown_names_rejected() -> None:
    assert isinstance(create("hash-ngram"), HashNgramEmbedder)
    assert isinstance(create("hash-word"), HashWordEmbedder)
    with pytest.raises(ValueError, match="unknown embedder"):
        create("bert")
    with pytest.raises(ValueError, match="positive"):
        HashNgramEmbedder(-1)


def test_character_ngrams_stay_inside_word_boundaries() -> None:
    grams = char_ngrams("cat")
    assert grams == ["<ca", "cat", "at>", "<cat", "cat>", "<cat>"]

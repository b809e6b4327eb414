"""Hypothesis strategies for ha-rag's protobuf messages (hypothesis cannot derive them from
the generated classes): structured requests whose fields range from well-formed to hostile
(control characters, right-to-left marks, empty and very long strings, odd filter keys,
NaN/Inf and wrong-dimension vectors, out-of-range numbers and enum values)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from harag.v1 import (
    admin_pb2,
    common_pb2,
    embedder_pb2,
    gateway_pb2,
    generator_pb2,
    retriever_pb2,
)

INT32 = st.integers(-(2**31), 2**31 - 1)
# Strings a protobuf string field can hold (valid UTF-8: no lone surrogates), weighted
# towards the awkward: control characters, format characters, whitespace, long runs.
CONTROL = st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"])
ANY_CHAR = st.characters(codec="utf-8")
text = st.one_of(
    st.text(ANY_CHAR, max_size=60),
    st.text(CONTROL, max_size=20),
    st.sampled_from(["", " ", "\x00", "\u202e\u200b", "a" * 5000, "\U0001f600" * 300]),
    st.from_regex(r"[A-Za-z ]{1,40}\??", fullmatch=True),  # question-like
)
short = st.text(ANY_CHAR, max_size=12)
ids = st.one_of(
    short, st.sampled_from(["", "a" * 2000, "dup", "x#0"]), st.text(CONTROL, max_size=5)
)
# Filter keys as callers mistype them: operators, spaces, empties, very long.
filter_key = st.one_of(
    short,
    st.sampled_from(["", "tags", "tags!", "year>", "a b", "=", "*", "~x", "k" * 9000]),
)
metadata = st.dictionaries(short, text, max_size=3)
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
any32 = st.floats(width=32)
# Vectors: the right dimensions of the mesh's models, wrong ones, and non-finite values.
DIMENSIONS = (128, 384)


@st.composite
def vector(draw: st.DrawFn) -> list[float]:
    """A right- or wrong-sized vector: seeded Gaussian values at a drawn scale (cheap to draw
    at 384 dimensions, and still shrinkable), with a few drawn values (NaN, Inf, huge, tiny)
    put in at drawn positions."""
    size = draw(st.one_of(st.sampled_from(DIMENSIONS), st.integers(0, 600)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.0, 1e-30, 1.0, 1e30]))
    values = (rng.standard_normal(size) * scale).astype(np.float32).tolist()
    for _ in range(draw(st.integers(0, 3)) if size else 0):
        values[draw(st.integers(0, size - 1))] = draw(any32)
    return values


models = st.one_of(st.sampled_from(["hash-ngram-384", "hash-word-128"]), short)


def metadata_filter() -> st.SearchStrategy[common_pb2.MetadataFilter]:
    return st.builds(
        lambda key, values: common_pb2.MetadataFilter(key=key, values=values),
        filter_key,
        st.lists(st.one_of(short, st.just("")), max_size=4),
    )


filters = st.lists(metadata_filter(), max_size=20)


@st.composite
def document(draw: st.DrawFn) -> common_pb2.Document:
    doc = common_pb2.Document(id=draw(ids), text=draw(text), metadata=draw(metadata))
    for key, values in draw(
        st.dictionaries(short, st.lists(short, max_size=3), max_size=2)
    ).items():
        doc.metadata_values[key].values.extend(values)
    if draw(st.booleans()):
        doc.chunk.CopyFrom(
            common_pb2.Chunk(
                document_id=draw(ids),
                position=draw(INT32),
                count=draw(INT32),
                title=draw(short),
                heading_path=draw(st.lists(short, max_size=3)),
                page=draw(INT32),
            )
        )
    return doc


def scored() -> st.SearchStrategy[common_pb2.ScoredDocument]:
    return st.builds(lambda d, s: common_pb2.ScoredDocument(document=d, score=s), document(), any32)


# -- the gateway's public API ------------------------------------------------------------------


@st.composite
def query_request(draw: st.DrawFn) -> gateway_pb2.QueryRequest:
    request = gateway_pb2.QueryRequest(query=draw(text), filters=draw(filters))
    top_k = draw(st.one_of(st.none(), st.integers(-1, 60), INT32))
    if top_k is not None:
        request.top_k = top_k
    return request


def stream_query_request() -> st.SearchStrategy[gateway_pb2.StreamQueryRequest]:
    return query_request().map(
        lambda q: gateway_pb2.StreamQueryRequest.FromString(q.SerializeToString())
    )


ingest_request = st.builds(
    lambda docs: gateway_pb2.IngestRequest(documents=docs), st.lists(document(), max_size=6)
)
delete_documents_request = st.builds(
    lambda i: gateway_pb2.DeleteDocumentsRequest(ids=i), st.lists(ids, max_size=8)
)
list_documents_request = st.builds(
    lambda size, token: gateway_pb2.ListDocumentsRequest(page_size=size, page_token=token),
    st.one_of(st.integers(-1, 1001), INT32),
    st.one_of(short, st.just("")),
)
# Only requests that must not move a breaker: an unknown upstream or an action that is no
# action. (A valid transition changes a breaker by design.)
transition_breaker_request = st.one_of(
    st.builds(
        lambda upstream, action: admin_pb2.TransitionBreakerRequest(
            upstream=upstream, action=action
        ),
        short.filter(lambda name: "-" not in name),  # no mesh upstream is named like this
        st.integers(0, 3),
    ),
    st.builds(
        lambda upstream, action: admin_pb2.TransitionBreakerRequest(
            upstream=upstream, action=action
        ),
        st.sampled_from(["embedder-primary", "retriever-fallback", "generator-primary"]),
        st.one_of(st.just(0), st.integers(4, 2**31 - 1), st.integers(-(2**31), -1)),
    ),
)


# -- the components ----------------------------------------------------------------------------


embed_request = st.builds(
    lambda texts, kind: embedder_pb2.EmbedRequest(texts=texts, input_type=kind),
    st.lists(text, max_size=8),
    st.one_of(st.integers(0, 2), INT32),
)


@st.composite
def search_request(draw: st.DrawFn) -> retriever_pb2.SearchRequest:
    request = retriever_pb2.SearchRequest(
        query_text=draw(text), model=draw(models), top_k=draw(st.one_of(st.integers(-1, 60), INT32))
    )
    request.filters.extend(draw(filters))
    request.query_embedding.values.extend(draw(vector()))
    return request


@st.composite
def indexed_document(draw: st.DrawFn) -> retriever_pb2.IndexedDocument:
    item = retriever_pb2.IndexedDocument(document=draw(document()))
    for model in draw(st.lists(models, max_size=2)):
        item.embeddings[model].values.extend(draw(vector()))
    return item


upsert_request = st.builds(
    lambda docs: retriever_pb2.UpsertRequest(documents=docs),
    st.lists(indexed_document(), max_size=4),
)
retriever_delete_request = st.builds(
    lambda i: retriever_pb2.DeleteRequest(ids=i), st.lists(ids, max_size=8)
)
replace_documents_request = st.builds(
    lambda docs: retriever_pb2.ReplaceDocumentsRequest(documents=docs),
    st.lists(
        st.builds(
            lambda doc_id, content_hash, chunks: retriever_pb2.DocumentChunks(
                document_id=doc_id, content_hash=content_hash, chunks=chunks
            ),
            ids,
            short,
            st.lists(indexed_document(), max_size=3),
        ),
        max_size=3,
    ),
)
remove_documents_request = st.builds(
    lambda i: retriever_pb2.RemoveDocumentsRequest(document_ids=i), st.lists(ids, max_size=8)
)
document_hashes_request = st.builds(
    lambda i: retriever_pb2.GetDocumentHashesRequest(document_ids=i), st.lists(ids, max_size=8)
)
list_stored_request = st.builds(
    lambda size, token: retriever_pb2.ListStoredDocumentsRequest(page_size=size, page_token=token),
    st.one_of(st.integers(-1, 1001), INT32),
    st.one_of(short, st.just("")),
)
generate_request = st.builds(
    lambda query, context, limit: generator_pb2.GenerateRequest(
        query=query, context=context, max_answer_chars=limit
    ),
    text,
    st.lists(scored(), max_size=6),
    st.one_of(st.integers(-1, 2000), INT32),
)
stream_generate_request = generate_request.map(
    lambda g: generator_pb2.StreamGenerateRequest.FromString(g.SerializeToString())
)

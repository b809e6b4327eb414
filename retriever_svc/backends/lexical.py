"""Fallback retriever: BM25 (k1=1.5, b=0.75, Lucene idf) over document text, via `bm25s`.

Text is tokenised with bm25s's tokenizer (lower-cased words of two or more characters,
English stopwords removed). No stemming: bm25s's recommended stemmer (PyStemmer) is a C
extension and no pure-Python stemmer is a dependency, so "retries" does not match "retry".

bm25s builds an immutable index, so writes only record the document's tokens and mark the
index stale; the first search after writes rebuilds it (about 0.4 s per 10k documents).
Bulk ingestion therefore costs O(1) index work per upsert. The rebuild runs without the
backend lock, so writes are never blocked behind it; a search uses the index built from
the state at its start. Filters and the top-k cut are applied to bm25s's full score
vector here (bm25s's weight_mask is the same multiplication); documents that share no term
with the query (score 0) are not returned.

A built index keeps the very entries it was built from, and a search returns an entry only
while the store still holds that same object: a search whose index predates a document's
replacement returns none of its chunks rather than a mix of old scores and new text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import bm25s
import numpy as np

from retriever_svc.backends.base import (
    LEXICAL,
    Hit,
    Query,
    SearchResult,
    StoreBackedBackend,
    top_positions,
)
from retriever_svc.records import StoredDocument
from retriever_svc.store import DocumentStore

K1 = 1.5
B = 0.75

# bm25s sets its own logger to DEBUG and would log every rebuild.
logging.getLogger("bm25s").setLevel(logging.WARNING)


def tokenize(text: str) -> list[str]:
    tokens = bm25s.tokenize(text, stopwords="en", return_ids=False, show_progress=False)
    return tokens[0]


class _BuiltIndex:
    """An immutable bm25s index and the document id of each of its rows."""

    def __init__(
        self, ids: list[str], corpus: list[list[str]], entries: list[StoredDocument]
    ) -> None:
        self.ids = ids
        self.entries = entries
        self.row_of = {doc_id: row for row, doc_id in enumerate(ids)}
        self.bm25: bm25s.BM25 | None = None
        if any(corpus):  # bm25s cannot index a corpus without a single token
            self.bm25 = bm25s.BM25(k1=K1, b=B, method="lucene")
            self.bm25.index(corpus, show_progress=False)

    def scores(self, terms: list[str]) -> np.ndarray:
        if self.bm25 is None:
            return np.zeros(len(self.ids), dtype=np.float32)
        return self.bm25.get_scores(terms)


class LexicalBackend(StoreBackedBackend):
    mode = LEXICAL

    def __init__(self, store: DocumentStore) -> None:
        self._tokens: dict[str, list[str]] = {}
        self._generation = 0  # bumped by every write; tells a rebuild whether it is current
        self._built = _BuiltIndex([], [], [])
        self._built_generation = 0
        self._rebuild_lock = threading.Lock()  # one rebuild at a time
        super().__init__(store)

    def _index_add(self, doc: StoredDocument) -> None:
        self._tokens[doc.id] = tokenize(doc.text)
        self._generation += 1

    def _note(self, chunks: Sequence[StoredDocument]) -> str:
        silent = sum(1 for chunk in chunks if not self._tokens.get(chunk.id))
        if not silent:
            return ""
        return (
            f"no word tokens: {silent} of {len(chunks)} chunks have no searchable words "
            "and cannot be found by a lexical search"
        )

    def _index_remove(self, doc: StoredDocument) -> None:
        self._tokens.pop(doc.id, None)
        self._generation += 1

    def _prepare_search(self) -> None:
        with self._rebuild_lock:
            with self._lock:
                if self._built_generation == self._generation:
                    return
                generation = self._generation
                ids = list(self._tokens)
                corpus = [self._tokens[i] for i in ids]
                entries = [self._store.documents[i] for i in ids]
            built = _BuiltIndex(ids, corpus, entries)  # the slow part, with writes free to proceed
            with self._lock:
                self._built, self._built_generation = built, generation

    def _search(self, query: Query, allowed: set[str] | None) -> SearchResult:
        built = self._built
        terms = tokenize(query.text)
        if not terms or not built.ids:
            return SearchResult([], len(built.ids))
        scores = built.scores(terms)
        if allowed is None:
            rows = np.flatnonzero(scores > 0)
        else:
            rows = np.fromiter(
                (built.row_of[i] for i in allowed if i in built.row_of), dtype=np.intp
            )
            rows.sort()
            rows = rows[scores[rows] > 0]
        best = rows[top_positions(scores[rows], query.top_k)]
        documents = self._store.documents
        hits = [
            Hit(built.entries[row], float(scores[row]))
            for row in best
            # an entry replaced or deleted since this search's index was built is not returned
            if documents.get(built.ids[row]) is built.entries[row]
        ]
        return SearchResult(hits, len(built.ids))

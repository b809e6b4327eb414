"""The primary generator: picks the context sentences that best answer the query.

Every sentence of every context document is scored by the IDF-weighted share of query
terms it contains (IDF over this request's sentences, so words common to the whole
context count little), plus small bonuses for matching query word pairs in order, for
the document's retrieval rank and for opening a document. The best two or three
distinct sentences, each followed by its citation, form the answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from generator_svc.backends import Answer
from generator_svc.backends.analysis import terms
from generator_svc.backends.compose import Piece, assemble, no_context
from generator_svc.backends.text import blocks, sentences

MODEL = "extractive-v1"
MAX_SENTENCES = 3
# A sentence joins the answer only if it scores at least this share of the best one.
MIN_RELATIVE_SCORE = 0.4
# Sentences sharing this much of their vocabulary say the same thing twice.
DUPLICATE_JACCARD = 0.6
# Fragments, formulas and code make poor answers: a sentence needs this many real words,
# and they must be at least half of its whitespace-separated tokens.
MIN_WORDS = 4
PAIR_BONUS = 0.1
MAX_PAIR_BONUS = 0.2
RANK_BONUS = 0.1  # for the top document, halving, a third, ... further down
LEAD_BONUS = 0.02  # a document's first sentence often defines its subject

_END = re.compile(r"[.!?]+$")
_REAL_WORD = re.compile(r"[^\W\d_]{2,}")


@dataclass(frozen=True)
class Sentence:
    text: str
    doc: int  # 0-based context index
    position: int  # order within the document
    terms: frozenset[str]
    sequence: tuple[str, ...]


@dataclass(frozen=True)
class Scored:
    score: float
    sentence: Sentence


def _reads_as_prose(sentence: str) -> bool:
    real = sum(1 for token in sentence.split() if _REAL_WORD.search(token))
    return real >= MIN_WORDS and 2 * real >= len(sentence.split())


def split_context(context: Sequence[str]) -> list[Sentence]:
    found: list[Sentence] = []
    for doc, text in enumerate(context):
        position = 0
        for block in blocks(text):
            for sentence in sentences(block):
                sequence = tuple(terms(sentence))
                if not sequence or not _reads_as_prose(sentence):
                    continue
                found.append(Sentence(sentence, doc, position, frozenset(sequence), sequence))
                position += 1
    return found


def idf_weights(candidates: Sequence[Sentence]) -> dict[str, float]:
    df: Counter[str] = Counter()
    for sentence in candidates:
        df.update(sentence.terms)
    n = len(candidates)
    return {term: math.log(1.0 + (n - count + 0.5) / (count + 0.5)) for term, count in df.items()}


def score_sentences(query: str, candidates: Sequence[Sentence]) -> list[Scored]:
    """Sentences sharing at least one query term, best first (ties: rank, then position)."""
    query_sequence = terms(query)
    idf = idf_weights(candidates)
    query_terms = {t for t in query_sequence if t in idf}
    total = sum(idf[t] for t in query_terms)
    if not total:
        return []
    pairs = {(a, b) for a, b in pairwise(query_sequence) if a != b}
    scored: list[Scored] = []
    for sentence in candidates:
        matched = query_terms & sentence.terms
        if not matched:
            continue
        coverage = sum(idf[t] for t in matched) / total
        in_order = pairs & set(pairwise(sentence.sequence))
        score = (
            coverage
            + min(MAX_PAIR_BONUS, PAIR_BONUS * len(in_order))
            + RANK_BONUS / (1 + sentence.doc)
            + (LEAD_BONUS if sentence.position == 0 else 0.0)
        )
        scored.append(Scored(score, sentence))
    scored.sort(key=lambda s: (-s.score, s.sentence.doc, s.sentence.position))
    return scored


def _near_duplicate(a: Sentence, b: Sentence) -> bool:
    union = a.terms | b.terms
    return len(a.terms & b.terms) / len(union) >= DUPLICATE_JACCARD


def select(scored: Sequence[Scored]) -> list[Sentence]:
    chosen: list[Sentence] = []
    for item in scored:
        if len(chosen) == MAX_SENTENCES or item.score < MIN_RELATIVE_SCORE * scored[0].score:
            break
        if any(_near_duplicate(item.sentence, other) for other in chosen):
            continue
        chosen.append(item.sentence)
    return chosen


def to_piece(sentence: Sentence) -> Piece:
    """Puts the citation before the sentence's final punctuation: `... terms [2].`"""
    match = _END.search(sentence.text)
    if match is None:
        return Piece(sentence.text, sentence.doc + 1, ".")
    return Piece(sentence.text[: match.start()], sentence.doc + 1, match.group())


class ExtractiveGenerator:
    """Stateless, so deterministic and thread-safe."""

    @property
    def model(self) -> str:
        return MODEL

    def generate(self, query: str, context: Sequence[str], max_answer_chars: int) -> Answer:
        chosen = select(score_sentences(query, split_context(context)))
        if not chosen:
            return no_context(max_answer_chars)
        return assemble([to_piece(s) for s in chosen], max_answer_chars)

"""`harag eval`: retrieval quality (MRR@k, recall@k) through the live gateway.

The labelled questions are the sample corpus's known questions by default, or a JSON file of
`[{"question": ..., "expected": "doc-id" | ["doc-id", ...]}, ...]`. Each question is asked
with top_k=k; a question's rank is the position of the first expected document among the
distinct documents its sources cite. The result is pushed to the gateway's admin listener
(GatewayAdminService.RecordEvaluation), which exports it as harag_gateway_retrieval_mrr and
_recall for the MRR alert: the gateway is already scraped, so nothing else needs deploying
(a Prometheus textfile would need a node exporter on the same host).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harag
from harag.v1 import admin_pb2, admin_pb2_grpc
from harag_cli.clients import keyed_channel

SAMPLE_QUESTIONS = Path(__file__).parent / "sample_corpus" / "questions.json"
RPC_TIMEOUT_S = 10.0


class QuestionFileError(ValueError):
    """The question file cannot be read or is not a list of labelled questions."""


@dataclass(frozen=True)
class Question:
    text: str
    expected: frozenset[str]


@dataclass(frozen=True)
class Scored:
    question: Question
    rank: int | None  # 1-based rank of the first expected document in the top k; None: missed
    found: int  # expected documents in the top k


@dataclass(frozen=True)
class Evaluation:
    k: int
    scored: list[Scored]

    @property
    def mrr(self) -> float:
        return sum(1 / s.rank for s in self.scored if s.rank) / len(self.scored)

    @property
    def recall(self) -> float:
        return sum(s.found / len(s.question.expected) for s in self.scored) / len(self.scored)


def load_questions(path: Path | None) -> list[Question]:
    source = path or SAMPLE_QUESTIONS
    try:
        data: Any = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise QuestionFileError(f"cannot read {source}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QuestionFileError(f"{source} is not JSON: {exc}") from exc
    if not isinstance(data, list) or not data:
        raise QuestionFileError(f"{source}: must be a non-empty list of questions")
    questions = []
    for i, item in enumerate(data):
        expected = item.get("expected") if isinstance(item, dict) else None
        ids = [expected] if isinstance(expected, str) else expected
        text = item.get("question") if isinstance(item, dict) else None
        if (
            not isinstance(text, str)
            or not text.strip()
            or not isinstance(ids, list)
            or not ids
            or not all(isinstance(x, str) and x for x in ids)
        ):
            raise QuestionFileError(
                f'{source}: item {i} needs a non-empty "question" and "expected" '
                "(a document id or a list of them)"
            )
        questions.append(Question(text.strip(), frozenset(ids)))
    return questions


def score(question: Question, cited: list[str], k: int) -> Scored:
    """Ranks the distinct documents the sources cite, in order, cut at k."""
    documents = list(dict.fromkeys(cited))[:k]
    rank = next((i for i, d in enumerate(documents, 1) if d in question.expected), None)
    return Scored(question, rank, len(question.expected & set(documents)))


async def evaluate(client: harag.AsyncClient, questions: list[Question], k: int) -> Evaluation:
    scored = []
    for question in questions:
        reply = await client.query(question.text, top_k=k)
        scored.append(score(question, [s.id for s in reply.sources], k))
    return Evaluation(k, scored)


async def export(
    admin: str, api_key: str | None, evaluation: Evaluation, question_set: str
) -> None:
    """Hands the result to the gateway, which exports it as metrics."""
    async with keyed_channel(admin, api_key) as channel:
        await admin_pb2_grpc.GatewayAdminServiceStub(channel).RecordEvaluation(
            admin_pb2.RecordEvaluationRequest(
                k=evaluation.k,
                mrr=evaluation.mrr,
                recall=evaluation.recall,
                questions=len(evaluation.scored),
                question_set=question_set,
            ),
            timeout=RPC_TIMEOUT_S,
        )


def table(evaluation: Evaluation, width: int = 70) -> str:
    k = evaluation.k
    lines = [f"{'rank':>5}  {'question':<{width}}  expected"]
    for s in evaluation.scored:
        text = s.question.text
        text = text if len(text) <= width else text[: width - 1] + "\u2026"
        rank = str(s.rank) if s.rank else "-"
        lines.append(f"{rank:>5}  {text:<{width}}  {', '.join(sorted(s.question.expected))}")
    lines.append("")
    lines.append(f"questions  {len(evaluation.scored)}")
    lines.append(f"MRR@{k:<6} {evaluation.mrr:.3f}")
    lines.append(f"recall@{k:<3} {evaluation.recall:.3f}")
    return "\n".join(lines)

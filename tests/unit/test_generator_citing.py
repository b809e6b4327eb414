"""An answer citing chunks names their document, title and section under it."""

from __future__ import annotations

from generator_svc.backends import Answer, Finish
from generator_svc.backends.citing import label, with_sources
from harag.v1 import common_pb2

SEP = " \u203a "


def chunk(doc: str, title: str, path: list[str], page: int = 0) -> common_pb2.Document:
    return common_pb2.Document(
        id=f"{doc}#0",
        text="t",
        chunk=common_pb2.Chunk(document_id=doc, title=title, heading_path=path, page=page),
    )


def test_a_chunk_is_labelled_by_title_section_and_document() -> None:
    doc = chunk("docs/deploy.md", "Deploying ha-rag", ["Deploying ha-rag", "Kubernetes", "Probes"])
    assert label(doc) == f"Deploying ha-rag{SEP}Kubernetes{SEP}Probes (docs/deploy.md)"
    assert label(chunk("paper.pdf", "Paper", [], page=4)) == "Paper (paper.pdf, page 4)"
    assert label(common_pb2.Document(id="legacy")) == "legacy"


def fixed(text: str, citations: tuple[int, ...]):
    def generate(budget: int) -> Answer:
        return Answer(text[:budget], Finish.STOP, citations)

    return generate


def test_the_cited_sources_follow_the_answer() -> None:
    docs = [chunk("a.md", "A", ["A", "Setup"]), chunk("b.md", "B", [])]
    answer = with_sources(fixed("Do this [2].", (2,)), docs, 500)
    assert answer.text == "Do this [2].\n\nSources:\n[2] B (b.md)"


def test_no_list_for_an_index_without_chunks() -> None:
    docs = [common_pb2.Document(id="old")]
    assert with_sources(fixed("Do this [1].", (1,)), docs, 500).text == "Do this [1]."


def test_the_list_stays_within_the_budget() -> None:
    docs = [chunk("a.md", "A", ["A", "Setup"])]
    answer = with_sources(fixed("x" * 100, (1,)), docs, 80)
    assert len(answer.text) <= 80
    assert answer.text.endswith(f"\n\nSources:\n[1] A{SEP}Setup (a.md)")

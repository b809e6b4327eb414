"""The template generator: the top documents' openings, each with its citation."""

from __future__ import annotations

from generator_svc.backends import NO_CONTEXT_TEXT, Finish, create
from generator_svc.backends.template import LEAD, TemplateGenerator

LONG = " ".join(f"word{i}" for i in range(100))


def test_lists_up_to_three_snippets_with_citations() -> None:
    context = ["First document text.", "", "# Title\n\nThird document.", "Fourth.", "Fifth."]
    answer = TemplateGenerator().generate("anything", context, 700)
    assert answer.text == (
        f"{LEAD}\n- First document text. [1]\n- Third document. [3]\n- Fourth. [4]"
    )
    assert answer.citations == (1, 3, 4)
    assert answer.finish is Finish.STOP


def test_long_documents_are_trimmed_on_a_word_boundary() -> None:
    answer = TemplateGenerator().generate("q", [LONG], 700)
    snippet = answer.text.splitlines()[1]
    assert snippet.endswith("… [1]")
    body = snippet.removeprefix("- ").removesuffix("… [1]")
    assert LONG.startswith(body + " ")
    assert 120 <= len(body) <= 160


def test_no_context_says_so() -> None:
    answer = TemplateGenerator().generate("q", ["", "  \n"], 700)
    assert answer.text == NO_CONTEXT_TEXT
    assert (answer.finish, answer.citations) == (Finish.NO_CONTEXT, ())


def test_answer_respects_the_length_limit() -> None:
    answer = TemplateGenerator().generate("q", [LONG, LONG], 100)
    assert answer.finish is Finish.LENGTH
    assert len(answer.text) <= 100
    assert answer.text.startswith(LEAD + "\n- word0 word1")
    assert answer.text.endswith("… [1]")


def test_fallback_is_template() -> None:
    assert create("fallback").model == "template-v1"

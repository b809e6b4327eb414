"""Each format's reader: what a user's file becomes, and the one-line reason when it cannot."""

from __future__ import annotations

import json

import pytest
from pdf_fixture import pdf_with_pages

from harag_cli.documents import read_file
from harag_cli.documents.readers import Failure


def one(path, doc_id=None):
    results = read_file(path, doc_id or path.name)
    assert len(results) == 1
    return results[0]


def test_markdown_title_and_tags_line_become_metadata_and_multi_values(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# Chunking notes\ntags: rag, retrieval\nauthor: Ada\n\nBody text.\n")
    doc = one(path, "a/notes.md")
    assert doc.id == "a/notes.md"
    assert doc.metadata["title"] == "Chunking notes"
    assert doc.metadata["author"] == "Ada"
    assert list(doc.metadata_values["tags"].values) == ["rag", "retrieval"]
    assert "tags" not in doc.metadata  # never joined into one string
    assert "Body text." in doc.text


def test_yaml_front_matter_is_metadata_and_left_out_of_the_text(tmp_path):
    path = tmp_path / "guide.markdown"
    path.write_text(
        "---\ntitle: The Guide\ntags: [ops, k8s]\nversion: 2\n---\n# Heading\n\nText.\n"
    )
    doc = one(path)
    assert doc.metadata["title"] == "The Guide"
    assert doc.metadata["version"] == "2"
    assert list(doc.metadata_values["tags"].values) == ["ops", "k8s"]
    assert doc.text.startswith("# Heading") and "---" not in doc.text


def test_broken_front_matter_fails_the_file_with_a_reason(tmp_path):
    path = tmp_path / "bad.md"
    path.write_text("---\ntitle: [unclosed\n---\nText\n")
    failure = one(path)
    assert isinstance(failure, Failure) and "front matter is not valid YAML" in failure.reason


def test_a_first_paragraph_with_a_colon_is_not_metadata(tmp_path):
    path = tmp_path / "n.md"
    path.write_text("Note: this is a sentence, not a tag list.\nAnd it goes on.\n")
    doc = one(path)
    assert set(doc.metadata) == {"source", "title"} and doc.metadata["title"] == "n.md"


def test_latin1_and_binary_files_fail_alone_as_not_utf8(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café".encode("latin-1"))
    binary = tmp_path / "image.md"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert str(one(latin)) == "latin.txt: cannot decode as UTF-8 (byte 0xe9 at offset 3)"
    assert str(one(binary)) == "image.md: cannot decode as UTF-8 (binary file)"


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("  \n")
    assert str(one(path)) == "empty.txt: empty document (no text)"


def test_html_text_without_scripts_and_styles_and_title_from_title_tag(tmp_path):
    path = tmp_path / "page.HTML"
    path.write_text(
        "<html><head><title> Probe  guide </title><style>p{color:red}</style></head><body>"
        "<h1>Probes</h1><script>alert('x')</script><p>Liveness &amp; readiness.</p></body></html>"
    )
    doc = one(path)
    assert doc.metadata["title"] == "Probe guide"
    assert "# Probes" in doc.text and "Liveness & readiness." in doc.text
    assert "alert" not in doc.text and "color" not in doc.text


def test_pdf_pages_joined_with_form_feed_and_title_kept(tmp_path):
    path = tmp_path / "paper.pdf"
    path.write_bytes(pdf_with_pages("First page.", "Second page.", title="A Paper"))
    doc = one(path)
    assert doc.text.split("\f") == ["First page.", "Second page."]
    assert doc.metadata["title"] == "A Paper" and doc.metadata["pages"] == "2"


def test_a_file_named_pdf_that_is_not_one_says_so(tmp_path):
    path = tmp_path / "fake.pdf"
    path.write_text("hello")
    assert str(one(path)) == "fake.pdf: not a PDF"
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\ngarbage")
    assert one(broken).reason.startswith("not a readable PDF")


def test_jsonl_each_bad_line_fails_alone(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "one", "text": "first", "metadata": {"tags": ["a", "b"]}}),
                "[1, 2]",
                "{not json",
                json.dumps({"text": 3}),
                json.dumps({"text": "no id"}),
                json.dumps({"id": "x", "text": "t", "metadata": {"k": {"nested": 1}}}),
            ]
        )
    )
    results = read_file(path, "data.jsonl")
    docs = [r for r in results if not isinstance(r, Failure)]
    failures = [str(r) for r in results if isinstance(r, Failure)]
    assert [d.id for d in docs] == ["one", "data.jsonl:5"]
    assert list(docs[0].metadata_values["tags"].values) == ["a", "b"]
    assert failures[0] == "data.jsonl: line 2: not a JSON object"
    assert failures[1].startswith("data.jsonl: line 3: not valid JSON")
    assert failures[2] == 'data.jsonl: line 4: "text" must be a string'
    assert failures[3].startswith("data.jsonl: line 6: metadata.k: must be a string")


@pytest.mark.parametrize("name", ["NOTES.MD", "a.Txt", "b.JSONL", "c.Htm"])
def test_extensions_are_matched_case_insensitively(tmp_path, name):
    path = tmp_path / name
    path.write_text('{"id": "x", "text": "hi"}' if name.endswith("JSONL") else "<p>hi</p>")
    assert not isinstance(one(path), Failure)

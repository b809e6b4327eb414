"""The folder walk: ids relative to the root, what it skips and why, and that nothing in a
messy folder stops the rest."""

from __future__ import annotations

import os

import pytest
from pdf_fixture import pdf_with_pages

from harag_cli.documents import collect
from harag_cli.documents.walk import walk


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "docs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "notes.md").write_text("# A\n\nalpha")
    (root / "b" / "notes.md").write_text("# B\n\nbeta")
    (root / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "binary.md").write_bytes(b"\x00\x01\x02")
    (root / "rows.jsonl").write_text('{"id": "r1", "text": "row one"}\n{broken\n')
    (root / "UPPER.MD").write_text("shouting")
    (root / "node_modules" / "pkg").mkdir(parents=True)
    (root / "node_modules" / "pkg" / "README.md").write_text("vendored")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.md").write_text("hidden")
    (root / "venv").mkdir()
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr")
    (root / "venv" / "lib.md").write_text("venv")
    (root / ".gitignore").write_text("drafts/\n*.secret.md\n")
    (root / "drafts").mkdir()
    (root / "drafts" / "d.md").write_text("draft")
    (root / "key.secret.md").write_text("secret")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / "paper.pdf").write_bytes(pdf_with_pages("Page one.", "Page two."))
    os.symlink("..", root / "a" / "loop")
    return root


def test_messy_folder_ids_outcomes_and_skips(messy):
    collected = collect([messy])
    assert sorted(d.id for d in collected.documents) == [
        "UPPER.MD",
        "a/notes.md",
        "b/notes.md",
        "paper.pdf",
        "r1",
    ]
    assert sorted(str(f) for f in collected.failures) == [
        "binary.md: cannot decode as UTF-8 (binary file)",
        "latin.txt: cannot decode as UTF-8 (byte 0xe9 at offset 3)",
        "rows.jsonl: line 2: not valid JSON (Expecting property name enclosed in double "
        "quotes at column 2)",
    ]
    assert dict(collected.skipped_by_reason()) == {
        "hidden": 2,  # .hidden/ and .gitignore
        "node_modules": 1,
        "virtual environment": 1,
        ".gitignore": 2,
        "symlink loop": 1,
        "unsupported type .png": 1,
    }
    assert ("a/loop/", "symlink loop") in collected.skipped


def test_a_single_file_is_named_by_its_file_name_and_a_missing_path_says_so(tmp_path):
    path = tmp_path / "deep" / "notes.md"
    path.parent.mkdir()
    path.write_text("text")
    found = walk([path, tmp_path / "nope"])
    assert [f.doc_id for f in found.files] == ["notes.md"]
    assert [str(f) for f in found.failures] == [f"{tmp_path / 'nope'}: no such file or directory"]


def test_an_unsupported_file_given_directly_fails_naming_the_types(tmp_path):
    path = tmp_path / "x.docx"
    path.write_text("x")
    (failure,) = walk([path]).failures
    assert "unsupported file type (use .md, .markdown, .txt" in failure.reason


def test_the_same_id_twice_fails_the_second(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "x.md").write_text("first")
    (tmp_path / "two" / "x.md").write_text("second")
    collected = collect([tmp_path / "one", tmp_path / "two"])
    assert [d.text for d in collected.documents] == ["first"]
    assert "duplicate id 'x.md'" in collected.failures[0].reason


def test_symlinked_folder_outside_the_root_is_followed_once(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.md").write_text("outside text")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link")
    os.symlink(outside, root / "link2")
    ids = sorted(d.id for d in collect([root]).documents)
    assert ids == ["link/o.md", "link2/o.md"]


def test_a_file_name_that_is_not_utf8_is_skipped_not_a_crash(tmp_path):
    name = os.fsdecode(b"caf\xe9.md")
    try:
        (tmp_path / name).write_text("text")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this filesystem refuses non-UTF-8 names")
    (tmp_path / "ok.md").write_text("fine")
    collected = collect([tmp_path])
    assert [d.id for d in collected.documents] == ["ok.md"]
    assert collected.skipped == [("caf\\xe9.md", "name is not UTF-8")]

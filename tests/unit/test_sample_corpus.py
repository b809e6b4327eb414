"""The sample corpus ships inside the package, so `harag up` loads it after a regular install."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from harag_cli.corpus import SAMPLE_CORPUS, sample_corpus

REPO = Path(__file__).resolve().parents[2]


def test_the_corpus_lookup_finds_every_sample_document_and_the_questions():
    documents = sample_corpus()
    assert len(documents) == 44
    assert documents[0].id == "01-what-is-rag" and documents[0].metadata["title"]
    assert (SAMPLE_CORPUS / "questions.json").is_file()
    assert (REPO / "corpus").resolve() == SAMPLE_CORPUS, "corpus/ at the root is the same files"


def test_the_wheel_carries_the_corpus_beside_the_code(tmp_path):
    source = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the tree
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        path = REPO / name
        if path.is_file() and not path.is_symlink():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = tmp_path.glob("ha_rag-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("harag_cli/sample_corpus/")}
    expected = {p.name for p in SAMPLE_CORPUS.iterdir()}
    assert shipped == expected and len(shipped) == 45
    assert "harag_cli/corpus.py" in names

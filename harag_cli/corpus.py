"""The sample corpus (kept here for the code that imports it); readers and the folder walk
are in `harag_cli.documents`."""

from __future__ import annotations

from harag_cli.documents import SAMPLE_CORPUS, sample_corpus

__all__ = ["SAMPLE_CORPUS", "sample_corpus"]

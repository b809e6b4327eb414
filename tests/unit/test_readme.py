"""The README's configuration reference is generated from the settings: it cannot drift."""

from __future__ import annotations

from pathlib import Path

from harag_cli.configref import reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_reference_matches_the_settings():
    assert reference() in README.read_text(), (
        "README's configuration reference is stale: paste `harag config-reference` output"
    )


def test_readme_shows_the_two_commands():
    text = README.read_text()
    assert "make run" in text and "make test" in text

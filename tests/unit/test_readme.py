"""The README's configuration reference is generated from the settings: it cannot drift."""

from __future__ import annotations

from pathlib import Path

from harag_cli.configref import BEGIN, END, reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_reference_matches_the_settings():
    text = README.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert reference() in text, (
        "README's configuration reference is stale: run `python -m harag_cli.configref --write`"
    )


def test_reference_shows_every_setting_with_its_env_var_and_unit():
    table = reference()
    assert "| `breaker_wait_jitter` | `HARAG_BREAKER_WAIT_JITTER` | `0.2` | fraction | " in table
    assert "| `HARAG_RETRY_BUDGET_MIN_PER_S` | `3.0` | calls/s |" in table
    assert "`breaker`: `gateway.resilience.breaker_types.BreakerConfig`" in table


def test_readme_shows_the_two_commands():
    text = README.read_text()
    assert "make run" in text and "make test" in text

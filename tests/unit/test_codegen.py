"""The committed stubs in harag/v1 are exactly what the .proto files generate."""

from __future__ import annotations

from pathlib import Path

from harag_cli.codegen import PACKAGE_DIR, generate

COMMITTED = Path(__file__).resolve().parents[2] / PACKAGE_DIR


def test_generated_code_matches_the_protos(tmp_path):
    fresh = {p.name: p.read_bytes() for p in generate(tmp_path)}
    committed = {p.name: p.read_bytes() for p in COMMITTED.iterdir() if p.is_file()}
    assert sorted(fresh) == sorted(committed), "stub files differ: run `make protos`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale stubs (run `make protos`): {stale}"

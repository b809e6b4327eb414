"""buf keeps the contract in shape: lint clean, a working breaking-change config, and a
generation template for languages this repository does not build itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
BUF = REPO / "tools" / "node_modules" / ".bin" / "buf"


@pytest.fixture(scope="module")
def buf() -> Path:
    if not BUF.exists():
        pytest.fail("the pinned buf CLI is missing: run `make install` (npm ci in tools)")
    return BUF


def run_buf(buf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(buf), *args], cwd=PROTOS, capture_output=True, text=True, timeout=120, check=False
    )


def test_buf_lint_passes(buf: Path) -> None:
    result = run_buf(buf, "lint")
    assert result.returncode == 0, f"buf lint:\n{result.stdout}{result.stderr}"


def test_buf_breaking_config_works(buf: Path) -> None:
    # Against itself nothing can break, so a failure here means the configuration is wrong.
    # (`make breaking` compares with main instead.)
    result = run_buf(buf, "breaking", "--against", ".")
    assert result.returncode == 0, f"buf breaking:\n{result.stdout}{result.stderr}"


def test_generation_template_covers_go_and_java() -> None:
    # Remote plugins need buf.build, which this machine cannot reach, so only the template's
    # shape is checked here; Node and Python are generated and exercised by the other tests.
    template = yaml.safe_load((PROTOS / "buf.gen.yaml").read_text())
    plugins = {plugin["remote"].split(":")[0] for plugin in template["plugins"]}

    assert template["version"] == "v2"
    assert {
        "buf.build/protocolbuffers/go",
        "buf.build/grpc/go",
        "buf.build/protocolbuffers/java",
        "buf.build/grpc/java",
    } <= plugins

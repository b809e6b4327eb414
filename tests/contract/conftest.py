"""Contract-test fixtures: the Node client, run as a subprocess against the test mesh.

The `mesh` fixture (tests/conftest.py) starts every process and ingests the sample corpus.
Node is a hard requirement here: a missing runtime fails loudly instead of skipping, so
`make test` cannot pass without proving the polyglot contract.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_CLIENT_DIR = REPO / "clients" / "node"
NODE_CLI = NODE_CLIENT_DIR / "harag.js"


@dataclass(frozen=True)
class NodeRun:
    """One finished `node harag.js ...` process."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return (
            f"node harag.js {' '.join(self.args)} -> exit {self.returncode}\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )

    def json(self) -> Any:
        return json.loads(self.stdout)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def error(self) -> dict[str, Any]:
        """The `{"error": ...}` document the CLI prints with --json when the call fails."""
        assert self.returncode == 1, self.explain()
        lines = self.json_lines()
        assert lines and "error" in lines[-1], self.explain()
        return lines[-1]["error"]


class NodeClient:
    """Runs the Node CLI against one gateway address."""

    def __init__(self, node: str, address: str) -> None:
        self.node = node
        self.address = address

    async def run(
        self, *args: str, env: dict[str, str] | None = None, timeout_s: float = 60.0
    ) -> NodeRun:
        # An asyncio subprocess, so a mesh served from this event loop keeps running.
        process = await asyncio.create_subprocess_exec(
            self.node,
            str(NODE_CLI),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return NodeRun(args, process.returncode, stdout.decode(), stderr.decode())

    async def ok(self, *args: str, env: dict[str, str] | None = None) -> NodeRun:
        """Runs a command against the gateway and requires it to succeed."""
        run = await self.run(*args, "--addr", self.address, env=env)
        assert run.returncode == 0, run.explain()
        return run

    async def failing(self, *args: str) -> NodeRun:
        run = await self.run(*args, "--addr", self.address)
        assert run.returncode != 0, run.explain()
        return run


@pytest.fixture(scope="session")
def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js (>= 18.3) is required for the contract tests; install it")
    if not (NODE_CLIENT_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("clients/node has no node_modules: run `make install` (npm ci in clients/node)")
    return node


@pytest.fixture
def node_client(mesh: Any, node_executable: str) -> NodeClient:
    return NodeClient(node_executable, mesh.gateway_address)


@pytest.fixture(scope="session")
def known_question(known_questions: list[dict[str, str]]) -> dict[str, str]:
    """A sample question and the id of the corpus document that answers it."""
    return known_questions[0]

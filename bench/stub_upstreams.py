"""Upstreams that cost next to nothing: Embed, Search and Generate with canned replies.

One process serves all three services (and grpc.health.v1), so that a gateway in front of
it is the bottleneck: the benchmark of gateway worker processes uses it. No telemetry, no
interceptors; every reply built once.

    python -m bench.stub_upstreams --port 50100
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import grpc

from bench.serving import serve_until_signalled
from harag.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
)

MODEL = "stub-embedding"
DIMENSION = 64


class StubEmbedder(embedder_pb2_grpc.EmbedderServiceServicer):
    def __init__(self) -> None:
        self.vector = common_pb2.Embedding(values=[1.0 / DIMENSION] * DIMENSION)

    async def Embed(self, request: embedder_pb2.EmbedRequest, context: Any) -> Any:
        return embedder_pb2.EmbedResponse(
            embeddings=[self.vector] * len(request.texts), model=MODEL, dimension=DIMENSION
        )


class StubRetriever(retriever_pb2_grpc.RetrieverServiceServicer):
    def __init__(self) -> None:
        docs = [
            common_pb2.ScoredDocument(
                document=common_pb2.Document(id=f"doc-{n}", text=f"Stub passage {n}."),
                score=1.0 - n / 10,
            )
            for n in range(4)
        ]
        self.reply = retriever_pb2.SearchResponse(
            documents=docs, mode=retriever_pb2.RETRIEVAL_MODE_DENSE, index_size=4
        )

    async def Search(self, request: retriever_pb2.SearchRequest, context: Any) -> Any:
        return self.reply


class StubGenerator(generator_pb2_grpc.GeneratorServiceServicer):
    def __init__(self) -> None:
        self.reply = generator_pb2.GenerateResponse(text="A stub answer [1].", model="stub")

    async def Generate(self, request: generator_pb2.GenerateRequest, context: Any) -> Any:
        return self.reply


async def serve(host: str, port: int) -> int:
    def register(server: grpc.aio.Server) -> None:
        embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(StubEmbedder(), server)
        retriever_pb2_grpc.add_RetrieverServiceServicer_to_server(StubRetriever(), server)
        generator_pb2_grpc.add_GeneratorServiceServicer_to_server(StubGenerator(), server)

    return await serve_until_signalled(register, f"{host}:{port}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stub_upstreams")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    return asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())

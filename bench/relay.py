"""The least a Python grpc.aio gateway can do: Query -> Embed, Search, Generate -> reply.

No pipeline, resilience layer, telemetry, interceptors, validation or receipts: plain
channels to the three primaries and the three calls in sequence. The gateway_overhead
scenario measures it beside the real gateway, so the added latency splits into what any
Python grpc.aio hop costs on this machine and what the gateway adds on top.

    python -m bench.relay --port 50200 --embedder H:P --retriever H:P --generator H:P
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import grpc

from bench.serving import serve_until_signalled
from harag.v1 import (
    embedder_pb2,
    embedder_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
)

TOP_K = 4
TIMEOUT_S = 5.0


class Relay(gateway_pb2_grpc.RagGatewayServiceServicer):
    def __init__(self, embedder: str, retriever: str, generator: str) -> None:
        self.embedder = embedder_pb2_grpc.EmbedderServiceStub(grpc.aio.insecure_channel(embedder))
        self.retriever = retriever_pb2_grpc.RetrieverServiceStub(
            grpc.aio.insecure_channel(retriever)
        )
        self.generator = generator_pb2_grpc.GeneratorServiceStub(
            grpc.aio.insecure_channel(generator)
        )

    async def Query(self, request: gateway_pb2.QueryRequest, context: Any) -> Any:
        text = request.query
        embedded = await self.embedder.Embed(
            embedder_pb2.EmbedRequest(texts=[text]), timeout=TIMEOUT_S
        )
        search = retriever_pb2.SearchRequest(query_text=text, top_k=TOP_K)
        search.query_embedding.values.extend(embedded.embeddings[0].values)
        search.model = embedded.model
        found = await self.retriever.Search(search, timeout=TIMEOUT_S)
        answer = await self.generator.Generate(
            generator_pb2.GenerateRequest(query=text, context=found.documents), timeout=TIMEOUT_S
        )
        return gateway_pb2.QueryResponse(answer=answer.text)


async def serve(args: argparse.Namespace) -> int:
    relay = Relay(args.embedder, args.retriever, args.generator)
    return await serve_until_signalled(
        lambda server: gateway_pb2_grpc.add_RagGatewayServiceServicer_to_server(relay, server),
        f"127.0.0.1:{args.port}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay")
    parser.add_argument("--port", type=int, required=True)
    for component in ("embedder", "retriever", "generator"):
        parser.add_argument(f"--{component}", required=True, help="host:port of its primary")
    return asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

"""harag.Client / AsyncClient: delete_documents, list_documents, iter_documents, and
multi-valued metadata on ingest."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from client_fakes import FakeAioChannel, FakeChannel, FakeRpcError

import harag
from harag.v1 import common_pb2, gateway_pb2


def _page(ids: list[str], token: str = "") -> gateway_pb2.ListDocumentsResponse:
    return gateway_pb2.ListDocumentsResponse(
        documents=[common_pb2.StoredDocument(document_id=i, chunks=2) for i in ids],
        next_page_token=token,
        served_by="retriever-primary",
    )


def test_delete_documents_sends_the_ids_and_returns_each_outcome():
    channel = FakeChannel()
    channel.script["DeleteDocuments"] = [
        gateway_pb2.DeleteDocumentsResponse(
            results=[
                gateway_pb2.DeleteResult(id="a.md", found=True),
                gateway_pb2.DeleteResult(id="gone.md", found=False),
            ],
            evicted_answers=3,
        )
    ]
    client = harag.Client(channel=channel, timeout=4)
    reply = client.delete_documents(["a.md", "gone.md"], request_id="r-1")
    assert [(r.id, r.found) for r in reply.results] == [("a.md", True), ("gone.md", False)]
    assert reply.evicted_answers == 3
    sent = channel.sent[0]
    assert list(sent.request.ids) == ["a.md", "gone.md"]
    assert sent.timeout == pytest.approx(4, abs=0.5) and ("x-request-id", "r-1") in sent.metadata


def test_delete_documents_refuses_a_single_string_or_empty_id():
    client = harag.Client(channel=FakeChannel())
    with pytest.raises(TypeError, match="not a single string"):
        client.delete_documents("a.md")
    with pytest.raises(TypeError, match=r"ids\[1\]: must be a non-empty str"):
        client.delete_documents(["a.md", ""])


def test_list_documents_one_page_and_iter_documents_every_page():
    channel = FakeChannel()
    channel.script["ListDocuments"] = [
        _page(["a", "b"], "t2"),
        _page(["a", "b"], "t2"),
        _page(["c"]),
    ]
    client = harag.Client(channel=channel)
    first = client.list_documents(page_size=2)
    assert [d.document_id for d in first.documents] == ["a", "b"] and first.next_page_token == "t2"
    assert [d.document_id for d in client.iter_documents(page_size=2)] == ["a", "b", "c"]
    assert [s.request.page_token for s in channel.sent] == ["", "", "t2"]
    assert {s.request.page_size for s in channel.sent} == {2}
    with pytest.raises(ValueError, match="page_size must be above 0"):
        client.list_documents(page_size=0)


def test_async_client_lists_every_page_and_deletes():
    channel = FakeAioChannel()
    channel.script["ListDocuments"] = [_page(["a"], "next"), _page(["b"])]
    channel.script["DeleteDocuments"] = [
        gateway_pb2.DeleteDocumentsResponse(results=[gateway_pb2.DeleteResult(id="a", found=True)])
    ]

    async def run() -> tuple[list[str], bool]:
        async with harag.AsyncClient(channel=channel) as client:
            ids = [d.document_id async for d in client.iter_documents()]
            reply = await client.delete_documents(["a"])
            return ids, reply.results[0].found

    assert asyncio.run(run()) == (["a", "b"], True)


def test_an_unimplemented_gateway_raises_the_typed_error():
    channel = FakeChannel()
    channel.script["ListDocuments"] = [FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "no")]
    with pytest.raises(harag.Unimplemented):
        harag.Client(channel=channel).list_documents()


def test_a_list_in_document_metadata_becomes_metadata_values():
    channel = FakeChannel()
    channel.script["Ingest"] = [gateway_pb2.IngestResponse()]
    harag.Client(channel=channel).ingest(
        [{"id": "d", "text": "t", "metadata": {"tags": ["rag", "ops"], "lang": "en"}}]
    )
    (doc,) = channel.sent[0].request.documents
    assert dict(doc.metadata) == {"lang": "en"}
    assert list(doc.metadata_values["tags"].values) == ["rag", "ops"]
    with pytest.raises(TypeError, match="key 'n'"):
        harag.Client(channel=channel).ingest([{"text": "t", "metadata": {"n": 1}}])

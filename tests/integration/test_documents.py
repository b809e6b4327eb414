"""Issue 13 end to end, against the real mesh: long documents as chunks, document identity,
atomic replacement under concurrent queries, unchanged documents skipped, delete, cache
eviction, and a document no model can embed failing (or being stored) alone."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest
from telemetry.support import metrics_address, scrape, value

from harag.v1 import common_pb2, gateway_pb2, retriever_pb2, retriever_pb2_grpc

STATUS = gateway_pb2.IngestStatus
RETRIEVERS = ("retriever-primary", "retriever-fallback")
SEP = " \u203a "


def filler(rng: random.Random, words: int) -> str:
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "shu"]
    return " ".join(
        "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(words)
    )


def handbook(target_chars: int = 205_000) -> tuple[str, str]:
    """A ~200 KB Markdown handbook and the heading of the section in its middle."""
    rng = random.Random(13)
    sections = []
    n = 0
    while sum(map(len, sections)) < target_chars:
        paragraphs = "\n\n".join(filler(rng, 60) + "." for _ in range(4))
        sections.append(f"## Area {n}\n\n### Routine {n}\n\n{paragraphs}\n")
        n += 1
    middle = n // 2
    answer = (
        "The quokka colony migrates to the northern dunes every March to breed, "
        "guided by the lighthouse keeper."
    )
    sections[middle] = (
        f"## Wildlife\n\n### Quokka migration\n\n{filler(rng, 50)}.\n\n{answer}\n\n"
        f"{filler(rng, 50)}.\n"
    )
    return "# Island handbook\n\n" + "\n".join(sections), "Quokka migration"


async def stored(mesh, name: str, document_id: str) -> common_pb2.StoredDocument | None:
    """What one retriever holds of a document (asked directly, not through the gateway)."""
    async with grpc.aio.insecure_channel(mesh.address(name)) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        token = ""
        while True:
            reply = await stub.ListStoredDocuments(
                retriever_pb2.ListStoredDocumentsRequest(page_size=1000, page_token=token),
                timeout=10,
            )
            for d in reply.documents:
                if d.document_id == document_id:
                    return d
            if not (token := reply.next_page_token):
                return None


async def ingest(stub, *documents: dict) -> gateway_pb2.IngestResponse:
    return await stub.Ingest(gateway_pb2.IngestRequest(documents=documents), timeout=120)


async def delete(stub, *ids: str) -> gateway_pb2.DeleteDocumentsResponse:
    return await stub.DeleteDocuments(gateway_pb2.DeleteDocumentsRequest(ids=ids), timeout=30)


async def test_a_200_kb_markdown_document_is_retrieved_by_its_middle_paragraph(clean_faults):
    mesh = clean_faults
    text, section = handbook()
    assert len(text) >= 200_000
    doc_id = "island/handbook.md"
    reply = await ingest(mesh.gateway, {"id": doc_id, "text": text})
    try:
        result = reply.results[0]
        assert result.status == STATUS.INGEST_STATUS_ACCEPTED, result.reason
        assert result.chunks > 100 and reply.chunks == result.chunks
        for name in RETRIEVERS:
            held = await stored(mesh, name, doc_id)
            assert held is not None and held.chunks == result.chunks
            assert held.title == "Island handbook"

        answer = await mesh.gateway.Query(
            gateway_pb2.QueryRequest(
                query="When does the quokka colony migrate to the northern dunes?"
            ),
            timeout=10,
        )
        top3 = answer.sources[:3]
        hits = [s for s in top3 if "northern dunes" in s.text]
        assert hits, [s.text[:80] for s in top3]
        hit = hits[0]
        assert hit.id == doc_id and hit.metadata["chunk_id"].startswith(doc_id + "#")
        assert hit.metadata["section"] == f"Island handbook{SEP}Wildlife{SEP}{section}"
        assert hit.metadata["title"] == "Island handbook"
        # The answer names the document and the section, not an opaque chunk id.
        assert f"Wildlife{SEP}{section} ({doc_id})" in answer.answer, answer.answer
    finally:
        await delete(mesh.gateway, doc_id)


def versioned(version: str, paragraphs: int) -> str:
    body = "\n\n".join(
        f"Zephyr lantern note {n}: the zephyr lantern is tuned to revision {version}. "
        + " ".join(f"{version}{n}x{k}" for k in range(30))
        for n in range(paragraphs)
    )
    return f"# Zephyr lantern\n\n{body}\n"


async def test_reingesting_a_changed_document_is_atomic_for_concurrent_queries(clean_faults):
    mesh = clean_faults
    doc_id = "live/zephyr.md"
    versions = {"alpha": versioned("alpha", 12), "beta": versioned("beta", 5)}
    first = await ingest(mesh.gateway, {"id": doc_id, "text": versions["alpha"]})
    alpha_chunks = first.results[0].chunks
    assert alpha_chunks > 5
    mixed: list[set[str]] = []
    seen: set[str] = set()
    done = asyncio.Event()

    async def query_until_done() -> None:
        while not done.is_set():
            reply = await mesh.gateway.Query(
                gateway_pb2.QueryRequest(query="How is the zephyr lantern tuned?", top_k=10),
                timeout=10,
            )
            found = {
                version
                for s in reply.sources
                if s.id == doc_id
                for version in versions
                if f"revision {version}" in s.text
            }
            seen.update(found)
            if len(found) > 1:
                mixed.append(found)

    try:
        queries = [asyncio.create_task(query_until_done()) for _ in range(4)]
        for version in ["beta", "alpha", "beta", "alpha", "beta"]:
            reply = await ingest(mesh.gateway, {"id": doc_id, "text": versions[version]})
            assert reply.results[0].status == STATUS.INGEST_STATUS_ACCEPTED
            await asyncio.sleep(0.05)  # let the queries run against this version
        done.set()
        await asyncio.gather(*queries)
        assert not mixed, f"a query saw old and new chunks together: {mixed[:3]}"
        assert seen == {"alpha", "beta"}, "the queries saw both versions, one at a time"
        # No orphan: each retriever holds exactly the new version's chunks.
        beta_chunks = reply.results[0].chunks
        assert beta_chunks < alpha_chunks
        for name in RETRIEVERS:
            held = await stored(mesh, name, doc_id)
            assert held is not None and held.chunks == beta_chunks, name
        after = await mesh.gateway.Query(
            gateway_pb2.QueryRequest(query="How is the zephyr lantern tuned?", top_k=20),
            timeout=10,
        )
        assert not [s for s in after.sources if "revision alpha" in s.text]
    finally:
        done.set()
        await delete(mesh.gateway, doc_id)


def embed_calls(mesh, name: str) -> float:
    samples = scrape(metrics_address(mesh.logs.json_of(name)))
    return value(samples, "rpc_server_call_duration_seconds_count", rpc_method="Embed")


async def test_reingesting_unchanged_documents_embeds_nothing(clean_faults):
    mesh = clean_faults
    docs = [
        {"id": f"same/doc-{n}.md", "text": f"# Note {n}\n\nUnchanged note number {n} about kelp."}
        for n in range(20)
    ]
    try:
        first = await ingest(mesh.gateway, *docs)
        assert {r.status for r in first.results} == {STATUS.INGEST_STATUS_ACCEPTED}
        before = {
            name: embed_calls(mesh, name) for name in ("embedder-primary", "embedder-fallback")
        }
        again = await ingest(mesh.gateway, *docs)
        assert {r.status for r in again.results} == {STATUS.INGEST_STATUS_UNCHANGED}
        assert again.unchanged == 20 and again.chunks == 0 and again.failed == 0
        after = {name: embed_calls(mesh, name) for name in before}
        assert after == before, "an unchanged document is not embedded again"
        # A changed one among them is embedded again, alone.
        docs[3] = {**docs[3], "text": docs[3]["text"] + " Now with more kelp."}
        third = await ingest(mesh.gateway, *docs)
        statuses = [r.status for r in third.results]
        assert statuses[3] == STATUS.INGEST_STATUS_ACCEPTED
        assert statuses.count(STATUS.INGEST_STATUS_UNCHANGED) == 19
    finally:
        await delete(mesh.gateway, *(d["id"] for d in docs))


CACHED = {"HARAG_CACHE_TTL_S": "60", "HARAG_STALE_TTL_S": "600"}


async def test_reingest_and_delete_evict_cached_answers(clean_faults, extra_gateway):
    mesh = clean_faults
    doc_id = "cache/otters.md"
    question = "What do the sea otters of Kelp Bay hold while sleeping?"
    old = "# Sea otters\n\nThe sea otters of Kelp Bay hold paws while sleeping."
    new = "# Sea otters\n\nThe sea otters of Kelp Bay hold seaweed fronds while sleeping."
    async with extra_gateway(**CACHED) as gw:
        try:
            await ingest(gw.stub, {"id": doc_id, "text": old})
            request = gateway_pb2.QueryRequest(query=question)
            first = await gw.stub.Query(request, timeout=10)
            assert first.sources[0].id == doc_id and "paws" in first.sources[0].text
            assert (await gw.stub.Query(request, timeout=10)).cached

            await ingest(gw.stub, {"id": doc_id, "text": new})
            fresh = await gw.stub.Query(request, timeout=10)
            assert not fresh.cached, "re-ingesting the document evicted the answer citing it"
            assert "seaweed" in fresh.sources[0].text
            assert (await gw.stub.Query(request, timeout=10)).cached

            deleted = await delete(gw.stub, doc_id)
            assert [(r.id, r.found, list(r.missing)) for r in deleted.results] == [
                (doc_id, True, [])
            ]
            assert deleted.evicted_answers == 1
            gone = await gw.stub.Query(request, timeout=10)
            assert not gone.cached
            assert doc_id not in [s.id for s in gone.sources]
            for name in RETRIEVERS:
                assert await stored(mesh, name, doc_id) is None, name
        finally:
            await delete(gw.stub, doc_id)


async def test_deleting_an_unknown_document_says_not_found(mesh):
    reply = await delete(mesh.gateway, "never/ingested.md")
    assert [(r.id, r.found) for r in reply.results] == [("never/ingested.md", False)]


@pytest.mark.parametrize(("ids", "field"), [([], "ids"), ([""], "ids[0]"), (["a", "a"], "ids")])
async def test_bad_delete_is_invalid_argument(mesh, ids, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await delete(mesh.gateway, *ids)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()


async def test_list_documents_pages_through_what_is_stored(clean_faults):
    mesh = clean_faults
    docs = [{"id": f"list/{n}.md", "text": f"Listing test document {n}."} for n in range(3)]
    await ingest(mesh.gateway, *docs)
    try:
        ids: list[str] = []
        token = ""
        while True:
            page = await mesh.gateway.ListDocuments(
                gateway_pb2.ListDocumentsRequest(page_size=2, page_token=token), timeout=10
            )
            assert page.served_by == "retriever-primary" and len(page.documents) <= 2
            ids += [d.document_id for d in page.documents]
            if not (token := page.next_page_token):
                break
        assert {d["id"] for d in docs} <= set(ids)
        assert ids == sorted(ids)
    finally:
        await delete(mesh.gateway, *(d["id"] for d in docs))


async def test_a_filter_with_an_unsupported_operator_is_invalid_argument(mesh):
    request = gateway_pb2.QueryRequest(
        query="anything", filters=[common_pb2.MetadataFilter(key="tags!", values=["rag"])]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.gateway.Query(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "filters[0].key" in caught.value.details()


async def test_an_emoji_only_document_does_not_fail_the_others(clean_faults):
    mesh = clean_faults
    docs = [
        {"id": f"batch/{n}.md", "text": f"Batch document {n} about tide pools and anemones."}
        for n in range(100)
    ]
    docs[42] = {"id": "batch/emoji.md", "text": "\U0001f600\U0001f680\U0001f389"}
    try:
        reply = await ingest(mesh.gateway, *docs)
        by_id = {r.id: r for r in reply.results}
        emoji = by_id.pop("batch/emoji.md")
        assert {r.status for r in by_id.values()} == {STATUS.INGEST_STATUS_ACCEPTED}
        if emoji.status == STATUS.INGEST_STATUS_FAILED:
            assert emoji.reason
        # A query of emoji alone still gets an answer, not an error.
        answer = await mesh.gateway.Query(
            gateway_pb2.QueryRequest(query="\U0001f600\U0001f680"), timeout=10
        )
        assert answer.answer
    finally:
        await delete(mesh.gateway, *(d["id"] for d in docs))


async def test_a_bad_page_size_is_invalid_argument(mesh):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.gateway.ListDocuments(gateway_pb2.ListDocumentsRequest(page_size=-1), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_size" in caught.value.details()

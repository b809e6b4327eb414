"""`harag ingest`, `harag docs`, `harag query --filter`, `harag stream` in-process over a fake
gateway channel: exit codes, one-line errors, the summary table; no sockets, no tracebacks."""

from __future__ import annotations

import json

from cli_support import run
from client_fakes import bad_request

from harag.v1 import common_pb2, gateway_pb2


def _accept(request_docs: list[common_pb2.Document]) -> gateway_pb2.IngestResponse:
    return gateway_pb2.IngestResponse(
        results=[
            gateway_pb2.IngestResult(
                id=d.id, index=i, status=gateway_pb2.INGEST_STATUS_ACCEPTED, chunks=2
            )
            for i, d in enumerate(request_docs)
        ],
        succeeded=len(request_docs),
    )


def summary(out: str) -> dict[str, int]:
    rows = {}
    for line in out.splitlines():
        label, _, value = line.rpartition(" ")
        if value.isdigit():
            rows[label.strip()] = int(value)
    return rows


def test_a_folder_with_bad_files_ingests_the_rest_reports_each_and_exits_1(
    gateway, capsys, tmp_path
):
    (tmp_path / "good.md").write_text("# Good\n\ntext")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9")
    (tmp_path / "rows.jsonl").write_text('{"id": "r", "text": "row"}\n"just a string"\n')
    gateway.script["Ingest"] = [
        gateway_pb2.IngestResponse(
            results=[
                gateway_pb2.IngestResult(
                    id="good.md", status=gateway_pb2.INGEST_STATUS_ACCEPTED, chunks=3
                ),
                gateway_pb2.IngestResult(id="r", status=gateway_pb2.INGEST_STATUS_UNCHANGED),
            ]
        )
    ]
    code, out, err = run(capsys, "ingest", str(tmp_path))
    assert code == 1
    assert err.splitlines() == [
        "harag ingest: latin.txt: cannot decode as UTF-8 (byte 0xe9 at offset 3)",
        "harag ingest: rows.jsonl: line 2: not a JSON object",
    ]
    assert [d.id for d in gateway.sent[0].request.documents] == ["good.md", "r"]
    rows = summary(out)
    assert rows["documents stored"] == 1 and rows["chunks stored"] == 3
    assert rows["unchanged (skipped)"] == 1 and rows["failed"] == 2
    assert rows["cannot decode as UTF-8"] == 1 and rows["not a JSON object"] == 1


def test_everything_stored_exits_0_and_a_server_side_failure_exits_1(gateway, capsys, tmp_path):
    (tmp_path / "a.md").write_text("alpha")
    gateway.script["Ingest"] = [
        _accept([common_pb2.Document(id="a.md")]),
        gateway_pb2.IngestResponse(
            results=[
                gateway_pb2.IngestResult(
                    id="a.md", status=gateway_pb2.INGEST_STATUS_FAILED, reason="too long"
                )
            ],
            failed=1,
        ),
    ]
    code, out, err = run(capsys, "ingest", str(tmp_path))
    assert (code, err) == (0, "") and summary(out)["documents stored"] == 1
    code, out, err = run(capsys, "ingest", str(tmp_path / "a.md"))
    assert code == 1 and err == "harag ingest: a.md: too long\n"
    assert summary(out)["too long"] == 1


def test_a_batch_the_gateway_refuses_fails_its_documents_and_the_run_goes_on(
    gateway, capsys, tmp_path, monkeypatch
):
    from harag_cli import ingesting

    monkeypatch.setattr(ingesting, "BATCH_DOCUMENTS", 1)
    (tmp_path / "a.md").write_text("alpha")
    (tmp_path / "b.md").write_text("beta")
    gateway.script["Ingest"] = [
        bad_request("documents[0].text", "longer than 8192 characters"),
        _accept([common_pb2.Document(id="b.md")]),
    ]
    code, out, err = run(capsys, "ingest", str(tmp_path))
    assert code == 1 and len(gateway.sent) == 2
    assert err.startswith("harag ingest: a.md: INVALID_ARGUMENT: documents[0].text")
    assert summary(out)["documents stored"] == 1


def test_missing_path_binary_file_and_junk_dir_never_trace(gateway, capsys, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.bin").write_bytes(b"\x00")
    (junk / "y.md").write_bytes(b"\x00\xff")
    code, out, err = run(capsys, "ingest", str(tmp_path / "missing"), str(junk))
    assert code == 1 and "Traceback" not in out + err
    assert f"harag ingest: {tmp_path / 'missing'}: no such file or directory" in err
    assert "harag ingest: y.md: cannot decode as UTF-8 (binary file)" in err
    assert gateway.sent == []  # nothing to send
    assert summary(out)["unsupported type .bin"] == 1


def test_verbose_lists_what_was_skipped(gateway, capsys, tmp_path):
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "a.md").write_text("a")
    gateway.script["Ingest"] = [_accept([common_pb2.Document(id="a.md")])]
    code, out, _ = run(capsys, "ingest", "-v", str(tmp_path))
    assert code == 0 and "  skipped node_modules/: node_modules" in out


def test_filters_are_sent_and_an_operator_is_refused_naming_it(gateway, capsys):
    gateway.script["Query"] = [gateway_pb2.QueryResponse(answer="ok")]
    code, _, _ = run(capsys, "query", "q", "--filter", "tags=rag,ops", "--filter", "lang=en")
    assert code == 0
    sent = gateway.sent[0].request.filters
    assert [(f.key, list(f.values)) for f in sent] == [("tags", ["rag", "ops"]), ("lang", ["en"])]
    for spec, operator in (("tags!=rag", "!="), ("year>2020", ">"), ("a==b", "=="), ("k~=v", "~=")):
        code, out, err = run(capsys, "query", "q", "--filter", spec)
        assert code == 2 and out == ""
        assert err == (
            f"harag query: --filter '{spec}': operator {operator} is not supported "
            "(only key=value, or key=v1,v2 for any of several values)\n"
        )
    code, _, err = run(capsys, "query", "q", "--filter", "novalue")
    assert (
        code == 2 and err == "harag query: --filter must be key=value or key=v1,v2, got 'novalue'\n"
    )
    assert len(gateway.sent) == 1


def test_query_json_prints_fields_at_their_default_values(gateway, capsys):
    gateway.script["Query"] = [
        gateway_pb2.QueryResponse(
            answer="a",
            stages=[gateway_pb2.StageReport(stage=gateway_pb2.STAGE_EMBED, served_by="e")],
        )
    ]
    code, out, _ = run(capsys, "query", "q", "--json")
    reply = json.loads(out)
    assert code == 0 and reply["degraded"] is False and reply["cached"] is False
    assert reply["stages"][0]["tier"] == 0 and reply["stages"][0]["degraded"] is False


def test_stream_prints_chunks_then_sources_named_by_title_and_section(gateway, capsys):
    source = gateway_pb2.Source(
        id="guide.md",
        citation=1,
        score=0.5,
        metadata={
            "title": "Deploy guide",
            "section": "Deploy guide \u203a Kubernetes \u203a Probes",
            "chunk_id": "guide.md#3",
            "page": "2",
        },
    )
    gateway.script["StreamQuery"] = [
        [
            gateway_pb2.StreamQueryResponse(sources=gateway_pb2.SourcesEvent(sources=[source])),
            gateway_pb2.StreamQueryResponse(chunk="Use "),
            gateway_pb2.StreamQueryResponse(chunk="probes [1]."),
            gateway_pb2.StreamQueryResponse(
                final=gateway_pb2.FinalEvent(answer="Use probes [1].", request_id="rid")
            ),
        ]
    ]
    code, out, _ = run(capsys, "stream", "how?", "--filter", "tags=ops")
    assert code == 0 and out.startswith("Use probes [1].\n")
    assert "[1] Deploy guide \u203a Kubernetes \u203a Probes (p. 2)  guide.md#3  score=0.500" in out
    assert "request_id rid" in out
    assert list(gateway.sent[0].request.filters[0].values) == ["ops"]


def test_docs_list_pages_through_and_delete_says_what_was_not_found(gateway, capsys):
    gateway.script["ListDocuments"] = [
        gateway_pb2.ListDocumentsResponse(
            documents=[common_pb2.StoredDocument(document_id="a.md", chunks=2, title="A")],
            next_page_token="p2",
        ),
        gateway_pb2.ListDocumentsResponse(
            documents=[common_pb2.StoredDocument(document_id="b/c.md", chunks=1, title="C")]
        ),
    ]
    code, out, _ = run(capsys, "docs", "list")
    assert code == 0 and "a.md" in out and "b/c.md" in out
    assert out.strip().endswith("2 documents, 3 chunks")
    gateway.script["DeleteDocuments"] = [
        gateway_pb2.DeleteDocumentsResponse(
            results=[
                gateway_pb2.DeleteResult(id="a.md", found=True),
                gateway_pb2.DeleteResult(id="zzz", found=False),
            ],
            evicted_answers=1,
        )
    ]
    code, out, _ = run(capsys, "docs", "delete", "a.md", "zzz")
    assert code == 1
    assert out.splitlines() == ["deleted a.md", "not found: zzz", "1 cached answers evicted"]


def test_docs_against_a_gateway_without_the_rpc_is_one_line(gateway, capsys):
    import grpc
    from client_fakes import FakeRpcError

    gateway.script["ListDocuments"] = [
        FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    ]
    code, out, err = run(capsys, "docs", "list")
    assert code == 1 and out == "" and err == "harag docs: UNIMPLEMENTED: Method not found!\n"

"""The `harag` CLI against the running mesh: ingest files, query, inject and clear faults."""

from __future__ import annotations

import json

from processes import free_port
from processes import run_harag as harag


async def test_ingest_txt_md_jsonl_then_query(clean_faults, tmp_path):
    mesh = clean_faults
    (tmp_path / "okapi.txt").write_text(
        "Okapis are forest giraffes that live in the Ituri rainforest."
    )
    (tmp_path / "narwhal.md").write_text(
        "# Narwhals\n\nNarwhals grow a spiral tusk up to three metres long."
    )
    (tmp_path / "more.jsonl").write_text(
        json.dumps(
            {
                "id": "cli-pangolin",
                "text": "Pangolins are covered in keratin scales.",
                "metadata": {"animal": "pangolin"},
            }
        )
        + "\n"
    )
    code, out, err = await harag("ingest", str(tmp_path), "--addr", mesh.gateway_address)
    assert code == 0, err
    assert "ingested 3 documents, 0 failed" in out
    code, out, _ = await harag(
        "query", "What covers a pangolin?", "--json", "--addr", mesh.gateway_address
    )
    reply = json.loads(out)
    assert reply["sources"][0]["id"] == "cli-pangolin"
    assert reply["sources"][0]["metadata"] == {"animal": "pangolin"}
    code, out, _ = await harag(
        "query", "How long is a narwhal tusk?", "--addr", mesh.gateway_address
    )
    assert code == 0 and "[1] narwhal" in out and "Stages:" in out


async def test_ingest_rejects_a_bad_jsonl_line_naming_it(mesh, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"no_text": 1}\n')
    code, _, err = await harag("ingest", str(bad), "--addr", mesh.gateway_address)
    assert code == 2 and f"{bad}:2" in err


async def test_faults_set_show_clear_through_the_cli(clean_faults):
    mesh = clean_faults
    # No component address given: the CLI asks the mesh's gateway where generator-primary is.
    code, out, err = await harag(
        "faults",
        "generator-primary",
        "set",
        "--error-rate",
        "1",
        "--code",
        "INTERNAL",
        "--gateway",
        mesh.gateway_address,
    )
    assert code == 0, err
    assert "'errorRate': 1.0" in out and "'errorCode': 13" in out
    reply = json.loads(
        (await harag("query", "What is idempotency?", "--json", "--addr", mesh.gateway_address))[1]
    )
    generate = reply["stages"][2]
    assert generate["served_by"] == "generator-fallback"
    assert generate["attempts"][0]["outcome"] == "INTERNAL"
    address = mesh.address("generator-primary")
    code, out, _ = await harag("faults", "generator-primary", "clear", "--addr", address)
    assert code == 0 and "faults cleared" in out


async def test_faults_names_the_known_services_for_an_unknown_one(mesh):
    code, _, err = await harag(
        "faults", "embedder-tertiary", "show", "--gateway", mesh.gateway_address
    )
    assert code == 1 and "Traceback" not in err
    assert "unknown service 'embedder-tertiary'" in err and "embedder-primary" in err


async def test_bad_query_is_one_line_naming_the_field_and_exits_2(mesh):
    code, out, err = await harag("query", "x", "--top-k", "0", "--addr", mesh.gateway_address)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("harag query: INVALID_ARGUMENT: top_k: "), err


async def test_a_missed_deadline_is_one_line_naming_the_flag(mesh):
    # 1 ms cannot cover three upstream hops, so the client's deadline expires first.
    code, out, err = await harag(
        "query", "What is BM25?", "--deadline", "0.001", "--addr", mesh.gateway_address
    )
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("harag query: DEADLINE_EXCEEDED: "), err
    assert err.endswith("(no answer within --deadline 0.001 s)\n"), err


async def test_no_gateway_is_one_line_suggesting_harag_up():
    port = free_port()  # nothing listens there
    code, _, err = await harag("health", "--addr", f"127.0.0.1:{port}")
    assert code == 1 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("harag health: UNAVAILABLE: ") and "`harag up` starts one" in err

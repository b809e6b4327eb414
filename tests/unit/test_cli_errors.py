"""What `harag` prints and returns when a call fails: one line naming the code, the server's
message, the bad fields, when to retry and the reason; exit 2 for a caller's mistake.

The CLI runs in-process on the client library over a fake channel: no sockets, no sleeps.
"""

from __future__ import annotations

import grpc
import pytest
from cli_support import run
from client_fakes import FakeRpcError, bad_request, rich_error, shed
from google.rpc import error_details_pb2

from harag.v1 import gateway_pb2
from harag_cli import main as cli


def test_a_bad_field_is_one_line_naming_it_and_exits_2(gateway, capsys):
    gateway.script["Query"] = [bad_request("top_k", "must be within 1..50")]
    code, out, err = run(capsys, "query", "x", "--top-k", "0")
    assert code == 2 and out == ""
    assert err == "harag query: INVALID_ARGUMENT: top_k: must be within 1..50\n"
    assert gateway.sent[0].request.top_k == 0


def test_fields_the_message_does_not_name_are_listed(gateway, capsys):
    violations = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="query", description="empty"),
            error_details_pb2.BadRequest.FieldViolation(field="top_k", description="too big"),
        ]
    )
    gateway.script["Query"] = [
        rich_error(grpc.StatusCode.INVALID_ARGUMENT, "query: empty", violations)
    ]
    code, _, err = run(capsys, "query", "")
    assert code == 2
    assert err == "harag query: INVALID_ARGUMENT: query: empty; top_k: too big\n"


def test_shed_load_says_when_to_retry_and_why(gateway, capsys):
    gateway.script["Query"] = [shed(0.25, reason="GATEWAY_OVERLOADED")]
    code, _, err = run(capsys, "query", "What is BM25?")
    assert code == 1
    assert err == (
        "harag query: RESOURCE_EXHAUSTED: gateway at capacity "
        "(retry in 0.25 s; reason GATEWAY_OVERLOADED)\n"
    )


def test_a_deadline_the_client_enforced_names_the_flag(gateway, capsys):
    gateway.script["Query"] = [FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")]
    code, _, err = run(capsys, "query", "What is BM25?", "--deadline", "0.5")
    assert code == 1
    assert err == (
        "harag query: DEADLINE_EXCEEDED: Deadline Exceeded (no answer within --deadline 0.5 s)\n"
    )
    assert gateway.sent[0].timeout == pytest.approx(0.5, abs=0.1)  # less what has passed


def test_an_unreachable_gateway_suggests_starting_a_mesh(gateway, capsys):
    gateway.script["GetSystemHealth"] = [
        FakeRpcError(
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses;\nlast error: Connection refused",
        )
    ]
    code, _, err = run(capsys, "health")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("harag health: UNAVAILABLE: failed to connect to all addresses; last")
    assert "`harag up` starts one" in err


def test_a_deadline_of_zero_is_refused_before_any_call(gateway, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["query", "x", "--deadline", "0"])
    assert exited.value.code == 2
    assert "--deadline: must be above 0 seconds" in capsys.readouterr().err
    assert gateway.sent == []


def test_query_sends_the_question_top_k_and_deadline_and_prints_the_answer(gateway, capsys):
    gateway.script["Query"] = [
        gateway_pb2.QueryResponse(answer="BM25 ranks documents.", request_id="r-1")
    ]
    code, out, err = run(capsys, "query", "What is BM25?", "--top-k", "3", "--deadline", "2")
    assert code == 0, err
    sent = gateway.sent[0]
    assert (sent.method, sent.request.query, sent.request.top_k) == ("Query", "What is BM25?", 3)
    assert sent.timeout == pytest.approx(2.0, abs=0.1)
    assert out.startswith("BM25 ranks documents.") and "request_id r-1" in out

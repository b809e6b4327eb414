"""An answer as shared bytes (gateway/answer_codec.py), a promoted answer's remaining life
in L1, and upstream addresses that balance over several processes (gateway/balancing.py)."""

from __future__ import annotations

import json

import pytest

from gateway.answer_codec import decode_answer, encode_answer
from gateway.balancing import channel_options, channel_target, check_address
from gateway.cache import AnswerCache
from gateway.query import QueryResult, StageResult
from gateway.resilience.clock import FakeClock
from gateway.resilience.guard import AttemptRecord
from harag.v1 import answer_cache_pb2, common_pb2, gateway_pb2


def result() -> QueryResult:
    source = common_pb2.ScoredDocument(
        document=common_pb2.Document(
            id="breakers#0", text="A breaker opens.", chunk=common_pb2.Chunk(document_id="breakers")
        ),
        score=0.9,
    )
    attempt = AttemptRecord("generator-primary", 0, "OK", 0.2, breaker_state="CLOSED", number=1)
    stages: list[StageResult[object]] = [
        StageResult(gateway_pb2.STAGE_EMBED, "embedder-primary", 0, 0.01, [], "e5", None),
        StageResult(gateway_pb2.STAGE_RETRIEVE, "retriever-primary", 0, 0.02, [], "dense", None),
        StageResult(gateway_pb2.STAGE_GENERATE, "generator-primary", 0, 0.2, [attempt], "m", None),
    ]
    return QueryResult("It opens [1].", "m", [source], stages)


def test_an_answer_survives_the_round_trip_through_bytes() -> None:
    original = result()
    decoded = decode_answer(encode_answer(original))
    assert decoded is not None
    assert (decoded.answer, decoded.model, decoded.sources) == (
        "It opens [1].",
        "m",
        original.sources,
    )
    assert [s.served_by for s in decoded.stages] == [s.served_by for s in original.stages]
    assert decoded.stages[2].attempts == original.stages[2].attempts
    assert not decoded.degraded and not decoded.cached


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\xff\xfe not protobuf",
        json.dumps({"answer": "x"}).encode(),
        answer_cache_pb2.CachedAnswer(answer="no stages").SerializeToString(),
    ],
)
def test_bytes_that_are_not_an_answer_are_a_miss(garbage: bytes) -> None:
    assert decode_answer(garbage) is None


def test_a_promoted_answer_keeps_only_the_freshness_it_had_left() -> None:
    clock = FakeClock()
    cache: AnswerCache[str] = AnswerCache(60.0, 3600.0, 10, clock)
    cache.put("q", "answer", ["d"], ttl_s=5.0, stale_ttl_s=100.0)
    clock.advance(4.9)
    assert cache.get("q") == "answer"
    clock.advance(0.2)
    assert cache.get("q") is None
    assert cache.get_stale("q") == "answer"
    clock.advance(100.0)
    assert cache.get_stale("q") is None


def test_clear_drops_every_answer_and_refuses_answers_begun_before() -> None:
    cache: AnswerCache[str] = AnswerCache(60.0, 3600.0, 10, FakeClock())
    epoch = cache.epoch
    cache.put("q", "answer", ["d"])
    cache.clear()
    assert cache.get("q") is None and cache.get_stale("q") is None
    cache.put("r", "late", ["d"], epoch)
    assert cache.get("r") is None


@pytest.mark.parametrize(
    ("address", "target", "balanced"),
    [
        ("127.0.0.1:7001", "127.0.0.1:7001", False),
        ("dns:///retriever-primary:50061", "dns:///retriever-primary:50061", True),
        ("127.0.0.1:7001|127.0.0.1:7002", "ipv4:127.0.0.1:7001,127.0.0.1:7002", True),
    ],
)
def test_upstream_addresses(address: str, target: str, balanced: bool) -> None:
    check_address(address)
    assert channel_target(address) == target
    options = dict(channel_options(address))
    assert ("grpc.service_config" in options) is balanced
    if balanced:
        config = json.loads(str(options["grpc.service_config"]))
        assert config["loadBalancingConfig"] == [{"round_robin": {}}]
        assert config["healthCheckConfig"] == {"serviceName": ""}


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("localhost:1|localhost:2", "IPv4 addresses"),
        ("dns:///retriever", "not host:port"),
        ("127.0.0.1:7001|127.0.0.1:99999", "outside 1..65535"),
    ],
)
def test_bad_upstream_addresses_are_named(address: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_address(address)

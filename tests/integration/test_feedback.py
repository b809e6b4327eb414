"""The feedback loop end to end (issue 18): a real gateway process records every answer in
SQLite or in the machine's PostgreSQL (a database of the test's own), SubmitFeedback rates
them, the quality gauges and log event follow, and `harag feedback report` reads it back."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fake_openai import FakeOpenAI, Script
from processes import run_harag, service_process
from telemetry.support import metrics_address, scrape, value

from harag.errors import error_from_rpc
from harag.v1 import admin_pb2, gateway_pb2

POSTGRES = "postgresql://postgres@127.0.0.1:5432/"
FRESH = {"HARAG_CACHE_TTL_S": "0", "HARAG_STALE_TTL_S": "0", "HARAG_COALESCE_ENABLED": "false"}


@pytest.fixture(params=["sqlite", "postgresql"])
def feedback_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The gateway settings of a fresh feedback database, and the report's flags."""
    if request.param == "sqlite":
        yield {"HARAG_FEEDBACK_STATE_DIR": str(tmp_path / "gateway"), "flag": "--state-dir"}
        return
    import psycopg

    name = f"harag_feedback_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES + "postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"HARAG_FEEDBACK_POSTGRES_DSN": POSTGRES + name, "flag": "--dsn"}
    finally:
        with psycopg.connect(POSTGRES + "postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report_flags(db: dict[str, str]) -> list[str]:
    setting = next(v for k, v in db.items() if k.startswith("HARAG_"))
    return [db["flag"], setting]


def rate(stub, request_id: str, rating: int, comment: str | None = None):  # type: ignore[no-untyped-def]
    return stub.SubmitFeedback(
        gateway_pb2.SubmitFeedbackRequest(request_id=request_id, rating=rating, comment=comment),
        timeout=10,
    )


async def refused(call) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_feedback_is_stored_validated_reported_and_alerts(
    clean_faults, extra_gateway, known_questions, feedback_db, tmp_path
):
    env = {k: v for k, v in feedback_db.items() if k.startswith("HARAG_")}
    async with extra_gateway(**env, **FRESH) as gw:
        # Earlier extra gateways logged under the same name: only this one's lines count.
        first_line = len(clean_faults.logs.json_of("gateway-extra")) - 1
        question = known_questions[0]["question"]
        good = await gw.stub.Query(gateway_pb2.QueryRequest(query=question), timeout=20)
        assert not good.degraded
        reply = await rate(gw.stub, good.request_id, 5, "spot on")
        assert reply.request_id == good.request_id and reply.recorded_at.seconds > 0

        # A degraded answer: the primary embedder's breaker held open on this gateway.
        await gw.admin.TransitionBreaker(
            admin_pb2.TransitionBreakerRequest(
                upstream="embedder-primary", action=admin_pb2.BREAKER_ACTION_FORCE_OPEN
            ),
            timeout=5,
        )
        bad = await gw.stub.Query(
            gateway_pb2.QueryRequest(query=known_questions[1]["question"]), timeout=20
        )
        assert bad.degraded
        code, out, err = await run_harag(
            "feedback",
            "submit",
            bad.request_id,
            "1",
            "--comment",
            "wrong document",
            "--addr",
            gw.address,
        )
        assert code == 0 and f"rated {bad.request_id}: 1/5" in out, err

        # Bad input: each refusal names its reason.
        unknown = await refused(rate(gw.stub, "no-such-request", 3))
        assert unknown.code() == grpc.StatusCode.NOT_FOUND
        code, _, err = await run_harag(
            "feedback", "submit", "no-such-request", "3", "--addr", gw.address
        )
        assert code == 1 and "NOT_FOUND" in err and "Traceback" not in err
        code, _, err = await run_harag(
            "feedback", "submit", good.request_id, "9", "--addr", gw.address
        )
        assert code == 2 and "rating" in err and "Traceback" not in err
        for rating in (0, 6):
            error = await refused(rate(gw.stub, good.request_id, rating))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert [v.field for v in error_from_rpc(error).field_violations] == ["rating"]
        huge = await refused(rate(gw.stub, good.request_id, 2, "x" * 1_000_000))
        assert huge.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error_from_rpc(huge).field_violations] == ["comment"]

        # The report: worst first, with answer, tiers and the primary-vs-degraded averages.
        code, out, err = await run_harag("feedback", "report", *report_flags(feedback_db))
        assert code == 0, err
        assert out.index(bad.request_id) < out.index(good.request_id)
        assert "embed=embedder-fallback" in out and "wrong document" in out
        assert bad.answer.split()[0] in out
        assert re.search(r"primary-served +5\.00 +\(1 ratings\)", out), out
        assert re.search(r"degraded +1\.00 +\(1 ratings\)", out), out
        assert "degraded answers rate 4.00 stars lower" in out

        # Ten low ratings within the hour: the gauges say so and the alert is logged.
        for i in range(10):
            answer = await gw.stub.Query(
                gateway_pb2.QueryRequest(query=f"{question} ({i})"), timeout=20
            )
            await rate(gw.stub, answer.request_id, 2)
        logs = clean_faults.logs.json_of("gateway-extra")
        samples = scrape(metrics_address(logs))
        assert value(samples, "harag_gateway_feedback_ratings") == 12
        assert value(samples, "harag_gateway_feedback_rating_average") == pytest.approx(26 / 12)
        alerts = [line for line in logs[first_line:] if line.get("event") == "quality_alert"]
        assert len(alerts) == 1 and alerts[0]["ratings"] == 10
        assert value(samples, "harag_gateway_feedback_records_dropped_total") == 0


async def test_an_answers_cost_follows_the_price_table(
    clean_faults, extra_gateway, known_questions, tmp_path
):
    prices = tmp_path / "prices.yaml"
    prices.write_text("model-x:\n  prompt_per_1k: 0.5\n  completion_per_1k: 2.0\n")
    tokens = ["Priced ", "answer ", "[1]."]
    each = (Script().prompt_tokens * 0.5 + len(tokens) * 2.0) / 1000
    with (
        FakeOpenAI(default=Script(tokens=tokens)) as fake,
        service_process(
            "generator_svc",
            "primary",
            backend="openai",
            openai_base_url=fake.base_url,
            openai_model="model-x",
        ) as (_, address),
    ):
        chain = f"priced={address},generator-fallback={clean_faults.address('generator-fallback')}"
        async with extra_gateway(
            HARAG_GENERATOR_CHAIN=chain,
            HARAG_PRICE_TABLE=str(prices),
            HARAG_FEEDBACK_STATE_DIR=str(tmp_path / "gateway"),
            **FRESH,
        ) as gw:
            for i in range(3):
                reply = await gw.stub.Query(
                    gateway_pb2.QueryRequest(query=f"{known_questions[2]['question']} {i}"),
                    timeout=20,
                )
                assert reply.stages[-1].served_by == "priced"
                assert reply.cost_usd == pytest.approx(each)
            stream = gw.stub.StreamQuery(
                gateway_pb2.StreamQueryRequest(query=known_questions[3]["question"]), timeout=20
            )
            final = [event async for event in stream][-1].final
            assert final.cost_usd == pytest.approx(each)
            samples = scrape(metrics_address(clean_faults.logs.json_of("gateway-extra")))
            await rate(gw.stub, reply.request_id, 1)
    assert value(samples, "harag_gateway_cost_usd_total", model="model-x") == pytest.approx(
        4 * each
    )
    code, out, err = await run_harag("feedback", "report", "--state-dir", str(tmp_path / "gateway"))
    assert code == 0, err
    assert f"${each:.6f}" in out


async def test_a_bad_price_table_stops_the_gateway_naming_the_setting(tmp_path):
    from gateway.config import GatewayConfig
    from servicekit.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="price_table"):
        load_config(GatewayConfig, env={"HARAG_PRICE_TABLE": json.dumps({"m": {"prompt": 1}})})


async def test_eval_prints_mrr_and_exports_it_to_the_gateway(mesh):
    code, out, err = await run_harag("eval", "--addr", mesh.gateway_address, "--k", "5")
    assert code == 0, err
    mrr = float(next(line for line in out.splitlines() if line.startswith("MRR@5")).split()[-1])
    recall = float(
        next(line for line in out.splitlines() if line.startswith("recall@5")).split()[-1]
    )
    assert 0.7 <= mrr <= 1.0 and recall >= mrr  # the sample corpus retrieves well
    samples = scrape(metrics_address(mesh.logs.json_of("gateway")))
    labels = {"question_set": "sample-corpus", "k": "5"}
    assert value(samples, "harag_gateway_retrieval_mrr", **labels) == pytest.approx(mrr, abs=1e-3)
    assert value(samples, "harag_gateway_retrieval_recall", **labels) == pytest.approx(
        recall, abs=1e-3
    )


async def test_eval_refuses_a_bad_question_file_in_one_line(mesh, tmp_path):
    bad = tmp_path / "questions.json"
    bad.write_text(json.dumps([{"question": "no label"}]))
    code, _, err = await run_harag("eval", "--addr", mesh.gateway_address, "--questions", str(bad))
    assert code == 2
    assert err.strip().count("\n") == 0 and "item 0" in err and "Traceback" not in err

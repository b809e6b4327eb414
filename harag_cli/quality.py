"""The operators' quality commands: `harag feedback report` and `harag eval`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.feedback.store import FeedbackUnavailable
from harag_cli.clients import api_client, resolve_api_key
from harag_cli.evaluation import QuestionFileError, evaluate, export, load_questions, table
from harag_cli.feedback_report import NoFeedbackDatabase, render_report, report_store
from harag_cli.meshctl import admin_address, gateway_address
from servicekit.config import ConfigError

CALLER_ERROR = 2
MAX_K = 50


async def feedback_report(args: argparse.Namespace) -> int:
    try:
        store = report_store(args.state_dir, args.dsn)
        report = await asyncio.to_thread(store.report, args.limit)
    except (ConfigError, NoFeedbackDatabase) as exc:
        print(f"harag feedback report: {exc}", file=sys.stderr)
        return CALLER_ERROR
    except FeedbackUnavailable as exc:
        print(f"harag feedback report: cannot read the feedback database: {exc}", file=sys.stderr)
        return 1
    finally:
        if "store" in locals():
            store.close()
    print(render_report(report))
    return 0


async def feedback_submit(args: argparse.Namespace) -> int:
    gateway = gateway_address(args.addr, args.port_offset)
    async with api_client(gateway, args.api_key) as client:
        await client.submit_feedback(args.request_id, args.rating, args.comment)
    print(f"rated {args.request_id}: {args.rating}/5")
    return 0


def _add_gateway_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--addr", help="gateway host:port (default: $HARAG_GATEWAY or 127.0.0.1:50051)"
    )
    parser.add_argument("--port-offset", type=int, help="the mesh of `harag up --port-offset N`")
    parser.add_argument("--api-key", help="API key (default: $HARAG_API_KEY, else `harag up`'s)")


async def eval_command(args: argparse.Namespace) -> int:
    if not 1 <= args.k <= MAX_K:
        print(f"harag eval: --k must be 1..{MAX_K}", file=sys.stderr)
        return CALLER_ERROR
    try:
        questions = load_questions(args.questions)
    except QuestionFileError as exc:
        print(f"harag eval: {exc}", file=sys.stderr)
        return CALLER_ERROR
    gateway = gateway_address(args.addr, args.port_offset)
    async with api_client(gateway, args.api_key) as client:
        result = await evaluate(client, questions, args.k)
    print(table(result))
    if not args.no_export:
        name = args.questions.name if args.questions else "sample-corpus"
        key = resolve_api_key(gateway, args.api_key)
        await export(admin_address(gateway, args.admin_addr), key, result, name)
        print(
            "exported to the gateway: harag_gateway_retrieval_mrr, harag_gateway_retrieval_recall"
        )
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("feedback", help="users' ratings of answers")
    fsub = p.add_subparsers(dest="feedback_command", required=True)
    r = fsub.add_parser(
        "report", help="worst-rated answers; ratings of primary-served vs degraded answers"
    )
    r.add_argument("--limit", type=int, default=10, help="worst-rated answers to list")
    r.add_argument(
        "--state-dir",
        help="the gateway's feedback_state_dir (default: $HARAG_FEEDBACK_STATE_DIR, else "
        "var/data/gateway, where `harag up` keeps it)",
    )
    r.add_argument(
        "--dsn", help="PostgreSQL DSN (default: $HARAG_FEEDBACK_POSTGRES_DSN; empty: SQLite)"
    )
    r.set_defaults(func=feedback_report)
    s = fsub.add_parser("submit", help="rate an answer by its request id (1..5)")
    s.add_argument("request_id", help="the answer's request id (`harag query` prints it)")
    s.add_argument("rating", type=int, help="1 (useless) .. 5 (exactly right)")
    s.add_argument("--comment", help="what was wrong or right")
    _add_gateway_flags(s)
    s.set_defaults(func=feedback_submit)

    e = sub.add_parser("eval", help="retrieval quality (MRR@k, recall@k) through the gateway")
    e.add_argument(
        "--questions",
        type=Path,
        help='JSON list of {"question", "expected": doc id or ids} (default: the sample '
        "corpus's known questions)",
    )
    e.add_argument("--k", type=int, default=5, help="cut-off of MRR@k and recall@k (1..50)")
    _add_gateway_flags(e)
    e.add_argument(
        "--admin-addr",
        help="the gateway's admin listener, where the result is exported (default: "
        "$HARAG_ADMIN_ADDR, else the gateway's port + 1)",
    )
    e.add_argument("--no-export", action="store_true", help="print only; do not export the result")
    e.set_defaults(func=eval_command)

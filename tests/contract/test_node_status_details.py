"""The Node client's google.rpc.Status decoding, checked without a mesh.

Python's grpcio-status builds the `grpc-status-details-bin` bytes exactly as every ha-rag
server does; the Node module must read every detail back.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from servicekit.errors import FieldViolations, resource_exhausted

from .conftest import NODE_CLIENT_DIR

DECODE = """
const { decodeStatus, fieldViolations } = require('./lib/status');
const status = decodeStatus(Buffer.from(process.argv[1], 'base64'));
console.log(JSON.stringify({ status, violations: fieldViolations(status.details) }));
"""


async def decode_in_node(node: str, status_bytes: bytes) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        node,
        "-e",
        DECODE,
        base64.b64encode(status_bytes).decode(),
        cwd=NODE_CLIENT_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout)


def details_bytes(status: Any) -> bytes:
    (value,) = [v for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    return value


async def test_every_field_violation_is_decoded(node_executable: str) -> None:
    violations = FieldViolations()
    violations.add("query", "must not be empty")
    violations.add("filters[1].values", "must not be empty")

    decoded = await decode_in_node(node_executable, details_bytes(violations.status()))

    assert decoded["status"]["code"] == 3
    assert [(v["field"], v["description"]) for v in decoded["violations"]] == [
        ("query", "must not be empty"),
        ("filters[1].values", "must not be empty"),
    ]
    (info,) = [d for d in decoded["status"]["details"] if d["@type"].endswith("ErrorInfo")]
    assert (info["reason"], info["domain"]) == ("INVALID_ARGUMENT", "harag.v1")


async def test_retry_info_keeps_its_delay(node_executable: str) -> None:
    status = resource_exhausted("overloaded", retry_after_s=1.5, reason="BULKHEAD_FULL")

    decoded = await decode_in_node(node_executable, details_bytes(status))

    assert decoded["status"]["code"] == 8 and decoded["violations"] == []
    (retry,) = [d for d in decoded["status"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry["retryDelay"] == {"seconds": "1", "nanos": 500_000_000}

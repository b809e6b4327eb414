"""OTLP span encoding with less Python work per span, for the OTLP/gRPC span exporter.

The SDK's encoder (`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`)
builds a protobuf object per span, per attribute and per attribute value: about 80 µs of
Python per span here, in the export thread of the process that serves the requests, where
it holds the GIL the event loop needs. This one writes the protobuf wire format directly,
and most of a span's attributes repeat from span to span (`rpc.system=grpc`, the upstream,
the tier, the breaker state), so each distinct key and value is encoded once and then
copied as bytes. The result is parsed back into the SDK's request message (in C), so the
exporter's own machinery (TLS, headers, compression, retries, timeouts from `OTEL_*`)
is untouched. The wire format follows opentelemetry/proto/trace/v1/trace.proto;
tests/telemetry/test_span_encoding.py checks it field for field against the SDK's encoder.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

# Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
_LEN, _VARINT, _FIXED64, _FIXED32 = 2, 0, 1, 5

# SpanFlags: the parent's (a link's) is_remote is known (0x100), and it is remote (0x200).
_LOCAL, _REMOTE = struct.pack("<I", 0x100), struct.pack("<I", 0x300)

_CACHE_LIMIT = 8192  # distinct attributes kept encoded; cleared when full (ids, errors vary)
_key_values: dict[tuple[str, type, Any], bytes] = {}
_strings: dict[str, bytes] = {}
_pack_q = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _varint(value: int) -> bytes:
    if value < 0:
        value &= 0xFFFF_FFFF_FFFF_FFFF  # int64 as two's complement: ten bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _varint(len(payload)) + payload


# Tags, by message (see trace.proto / common.proto).
_REQ_RESOURCE_SPANS = _tag(1, _LEN)
_RS_RESOURCE, _RS_SCOPE_SPANS, _RS_SCHEMA_URL = _tag(1, _LEN), _tag(2, _LEN), _tag(3, _LEN)
_RES_ATTRIBUTES, _RES_DROPPED = _tag(1, _LEN), _tag(2, _VARINT)
_SS_SCOPE, _SS_SPANS, _SS_SCHEMA_URL = _tag(1, _LEN), _tag(2, _LEN), _tag(3, _LEN)
_SCOPE_NAME, _SCOPE_VERSION, _SCOPE_ATTRIBUTES = _tag(1, _LEN), _tag(2, _LEN), _tag(3, _LEN)
_SPAN_TRACE_ID = _tag(1, _LEN) + b"\x10"  # always 16 bytes
_SPAN_SPAN_ID = _tag(2, _LEN) + b"\x08"  # always 8 bytes
_SPAN_TRACE_STATE = _tag(3, _LEN)
_SPAN_PARENT_ID = _tag(4, _LEN) + b"\x08"
_SPAN_NAME = _tag(5, _LEN)
_SPAN_KIND = _tag(6, _VARINT)
_SPAN_START, _SPAN_END = _tag(7, _FIXED64), _tag(8, _FIXED64)
_SPAN_ATTRIBUTES, _SPAN_DROPPED_ATTRIBUTES = _tag(9, _LEN), _tag(10, _VARINT)
_SPAN_EVENTS, _SPAN_DROPPED_EVENTS = _tag(11, _LEN), _tag(12, _VARINT)
_SPAN_LINKS, _SPAN_DROPPED_LINKS = _tag(13, _LEN), _tag(14, _VARINT)
_SPAN_STATUS = _tag(15, _LEN)
_EVENT_TIME, _EVENT_NAME = _tag(1, _FIXED64), _tag(2, _LEN)
_EVENT_ATTRIBUTES, _EVENT_DROPPED = _tag(3, _LEN), _tag(4, _VARINT)
_LINK_TRACE_ID, _LINK_SPAN_ID = _tag(1, _LEN) + b"\x10", _tag(2, _LEN) + b"\x08"
_LINK_ATTRIBUTES = _tag(4, _LEN)  # a link's trace_state (3) is not sent, as by the SDK
_LINK_DROPPED, _LINK_FLAGS = _tag(5, _VARINT), _tag(6, _FIXED32)
_SPAN_FLAGS = _tag(16, _FIXED32)
_STATUS_MESSAGE, _STATUS_CODE = _tag(2, _LEN), _tag(3, _VARINT)
_KV_KEY, _KV_VALUE = _tag(1, _LEN), _tag(2, _LEN)
_ANY_STRING, _ANY_BOOL, _ANY_INT = _tag(1, _LEN), _tag(2, _VARINT), _tag(3, _VARINT)
_ANY_DOUBLE, _ANY_ARRAY, _ANY_KVLIST = _tag(4, _FIXED64), _tag(5, _LEN), _tag(6, _LEN)
_ANY_BYTES = _tag(7, _LEN)
_LIST_VALUES = _tag(1, _LEN)  # ArrayValue.values and KeyValueList.values


def _string(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode()) if text else b""


def _any_value(value: Any) -> bytes:
    """The payload of an AnyValue (the SDK's `_encode_value`, same order of checks)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _ANY_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _field(_ANY_STRING, value.encode())  # an empty string is still set (oneof)
    if isinstance(value, int):
        return _ANY_INT + _varint(value)
    if isinstance(value, float):
        return _ANY_DOUBLE + _pack_d(value)
    if isinstance(value, bytes):
        return _field(_ANY_BYTES, value)
    if isinstance(value, Sequence):
        items = b"".join(_field(_LIST_VALUES, _any_value(v)) for v in value)
        return _field(_ANY_ARRAY, items)
    if isinstance(value, Mapping):
        items = b"".join(_field(_LIST_VALUES, _key_value(str(k), v)) for k, v in value.items())
        return _field(_ANY_KVLIST, items)
    raise TypeError(f"cannot encode an attribute value of type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    """The payload of a KeyValue; scalars are remembered (type included: True is not 1)."""
    if isinstance(value, str | bool | int):
        cache_key = (key, type(value), value)
        cached = _key_values.get(cache_key)
        if cached is None:
            if len(_key_values) >= _CACHE_LIMIT:
                _key_values.clear()
            cached = _key_values[cache_key] = _string(_KV_KEY, key) + _field(
                _KV_VALUE, _any_value(value)
            )
        return cached
    return _string(_KV_KEY, key) + _field(_KV_VALUE, _any_value(value))


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    return b"".join([_field(tag, _key_value(k, v)) for k, v in attributes.items()])


def _name(text: str) -> bytes:
    cached = _strings.get(text)
    if cached is None:
        if len(_strings) >= _CACHE_LIMIT:
            _strings.clear()
        cached = _strings[text] = _field(_SPAN_NAME, text.encode())
    return cached


def _trace_state(tag: bytes, context: SpanContext) -> bytes:
    state = context.trace_state
    if not state:
        return b""
    return _string(tag, ",".join(f"{key}={value}" for key, value in state.items()))


def _flags(tag: bytes, parent: SpanContext | None) -> bytes:
    return tag + (_REMOTE if parent is not None and parent.is_remote else _LOCAL)


def _count(tag: bytes, n: int) -> bytes:
    return tag + _varint(n) if n else b""


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None  # an SDK span always has one
    parent = span.parent
    parts = [
        _SPAN_TRACE_ID,
        context.trace_id.to_bytes(16, "big"),
        _SPAN_SPAN_ID,
        context.span_id.to_bytes(8, "big"),
        _trace_state(_SPAN_TRACE_STATE, context),
    ]
    if parent is not None:
        parts += (_SPAN_PARENT_ID, parent.span_id.to_bytes(8, "big"))
    parts += (
        _name(span.name),
        _SPAN_KIND,
        _varint(span.kind.value + 1),  # OTLP numbers kinds from UNSPECIFIED = 0
        _SPAN_START,
        _pack_q(span.start_time or 0),
        _SPAN_END,
        _pack_q(span.end_time or 0),
        _attributes(_SPAN_ATTRIBUTES, span.attributes),
        _count(_SPAN_DROPPED_ATTRIBUTES, span.dropped_attributes),
    )
    for event in span.events:
        payload = (
            _EVENT_TIME
            + _pack_q(event.timestamp)
            + _string(_EVENT_NAME, event.name)
            + _attributes(_EVENT_ATTRIBUTES, event.attributes)
            + _count(_EVENT_DROPPED, event.dropped_attributes)
        )
        parts.append(_field(_SPAN_EVENTS, payload))
    parts.append(_count(_SPAN_DROPPED_EVENTS, span.dropped_events))
    for link in span.links:
        linked = link.context
        payload = (
            _LINK_TRACE_ID
            + linked.trace_id.to_bytes(16, "big")
            + _LINK_SPAN_ID
            + linked.span_id.to_bytes(8, "big")
            + _attributes(_LINK_ATTRIBUTES, link.attributes)
            + _count(_LINK_DROPPED, link.dropped_attributes)
            + _flags(_LINK_FLAGS, linked)
        )
        parts.append(_field(_SPAN_LINKS, payload))
    parts.append(_count(_SPAN_DROPPED_LINKS, span.dropped_links))
    status = span.status
    code = status.status_code.value
    parts.append(
        _field(
            _SPAN_STATUS,
            _string(_STATUS_MESSAGE, status.description or "")
            + (_STATUS_CODE + _varint(code) if code else b""),
        )
    )
    parts.append(_flags(_SPAN_FLAGS, parent))
    return b"".join(parts)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    return (
        _string(_SCOPE_NAME, scope.name)
        + _string(_SCOPE_VERSION, scope.version or "")
        + _attributes(_SCOPE_ATTRIBUTES, scope.attributes)
    )


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """An ExportTraceServiceRequest, serialised: spans grouped by resource, then scope."""
    # By the resource object first: a Resource hashes by dumping its attributes to JSON, too
    # dear per span, and a process has one. Equal resources are then merged, as the SDK does.
    by_object: dict[int, tuple[Resource, dict[InstrumentationScope | None, list[bytes]]]] = {}
    for span in spans:
        resource = span.resource
        group = by_object.get(id(resource))
        if group is None:
            group = by_object[id(resource)] = (resource, {})
        group[1].setdefault(span.instrumentation_scope or None, []).append(
            _field(_SS_SPANS, _span(span))
        )
    grouped: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
    for resource, scopes in by_object.values():
        into = grouped.setdefault(resource, {})
        for scope, encoded in scopes.items():
            into.setdefault(scope, []).extend(encoded)
    out = []
    for resource, by_scope in grouped.items():
        scope_spans = b"".join(
            _field(
                _RS_SCOPE_SPANS,
                _field(_SS_SCOPE, _scope(scope))
                + b"".join(encoded)
                + _string(_SS_SCHEMA_URL, (scope.schema_url or "") if scope else ""),
            )
            for scope, encoded in by_scope.items()
        )
        payload = (
            _field(_RS_RESOURCE, _attributes(_RES_ATTRIBUTES, resource.attributes))
            + scope_spans
            + _string(_RS_SCHEMA_URL, resource.schema_url or "")
        )
        out.append(_field(_REQ_RESOURCE_SPANS, payload))
    return b"".join(out)


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/gRPC span exporter with `encode_spans` above as its encoder."""

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest.FromString(encode_spans(data))

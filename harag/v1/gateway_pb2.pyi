import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from harag.v1 import common_pb2 as _common_pb2
from harag.v1 import generator_pb2 as _generator_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_EMBED: _ClassVar[Stage]
    STAGE_RETRIEVE: _ClassVar[Stage]
    STAGE_GENERATE: _ClassVar[Stage]

class CircuitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CIRCUIT_STATE_UNSPECIFIED: _ClassVar[CircuitState]
    CIRCUIT_STATE_CLOSED: _ClassVar[CircuitState]
    CIRCUIT_STATE_OPEN: _ClassVar[CircuitState]
    CIRCUIT_STATE_HALF_OPEN: _ClassVar[CircuitState]
    CIRCUIT_STATE_FORCED_OPEN: _ClassVar[CircuitState]
    CIRCUIT_STATE_DISABLED: _ClassVar[CircuitState]

class IngestStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INGEST_STATUS_UNSPECIFIED: _ClassVar[IngestStatus]
    INGEST_STATUS_ACCEPTED: _ClassVar[IngestStatus]
    INGEST_STATUS_PARTIAL: _ClassVar[IngestStatus]
    INGEST_STATUS_FAILED: _ClassVar[IngestStatus]
    INGEST_STATUS_UNCHANGED: _ClassVar[IngestStatus]
    INGEST_STATUS_QUEUED: _ClassVar[IngestStatus]

class WriteStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WRITE_STATUS_UNSPECIFIED: _ClassVar[WriteStatus]
    WRITE_STATUS_INDEXED: _ClassVar[WriteStatus]
    WRITE_STATUS_QUEUED: _ClassVar[WriteStatus]
    WRITE_STATUS_FAILED: _ClassVar[WriteStatus]

class SystemStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SYSTEM_STATUS_UNSPECIFIED: _ClassVar[SystemStatus]
    SYSTEM_STATUS_HEALTHY: _ClassVar[SystemStatus]
    SYSTEM_STATUS_DEGRADED: _ClassVar[SystemStatus]
    SYSTEM_STATUS_CRITICAL: _ClassVar[SystemStatus]

class UpstreamHealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPSTREAM_HEALTH_STATUS_UNSPECIFIED: _ClassVar[UpstreamHealthStatus]
    UPSTREAM_HEALTH_STATUS_SERVING: _ClassVar[UpstreamHealthStatus]
    UPSTREAM_HEALTH_STATUS_NOT_SERVING: _ClassVar[UpstreamHealthStatus]
    UPSTREAM_HEALTH_STATUS_UNREACHABLE: _ClassVar[UpstreamHealthStatus]

class IngestJobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INGEST_JOB_STATE_UNSPECIFIED: _ClassVar[IngestJobState]
    INGEST_JOB_STATE_RUNNING: _ClassVar[IngestJobState]
    INGEST_JOB_STATE_INDEXING: _ClassVar[IngestJobState]
    INGEST_JOB_STATE_DONE: _ClassVar[IngestJobState]
    INGEST_JOB_STATE_INTERRUPTED: _ClassVar[IngestJobState]
STAGE_UNSPECIFIED: Stage
STAGE_EMBED: Stage
STAGE_RETRIEVE: Stage
STAGE_GENERATE: Stage
CIRCUIT_STATE_UNSPECIFIED: CircuitState
CIRCUIT_STATE_CLOSED: CircuitState
CIRCUIT_STATE_OPEN: CircuitState
CIRCUIT_STATE_HALF_OPEN: CircuitState
CIRCUIT_STATE_FORCED_OPEN: CircuitState
CIRCUIT_STATE_DISABLED: CircuitState
INGEST_STATUS_UNSPECIFIED: IngestStatus
INGEST_STATUS_ACCEPTED: IngestStatus
INGEST_STATUS_PARTIAL: IngestStatus
INGEST_STATUS_FAILED: IngestStatus
INGEST_STATUS_UNCHANGED: IngestStatus
INGEST_STATUS_QUEUED: IngestStatus
WRITE_STATUS_UNSPECIFIED: WriteStatus
WRITE_STATUS_INDEXED: WriteStatus
WRITE_STATUS_QUEUED: WriteStatus
WRITE_STATUS_FAILED: WriteStatus
SYSTEM_STATUS_UNSPECIFIED: SystemStatus
SYSTEM_STATUS_HEALTHY: SystemStatus
SYSTEM_STATUS_DEGRADED: SystemStatus
SYSTEM_STATUS_CRITICAL: SystemStatus
UPSTREAM_HEALTH_STATUS_UNSPECIFIED: UpstreamHealthStatus
UPSTREAM_HEALTH_STATUS_SERVING: UpstreamHealthStatus
UPSTREAM_HEALTH_STATUS_NOT_SERVING: UpstreamHealthStatus
UPSTREAM_HEALTH_STATUS_UNREACHABLE: UpstreamHealthStatus
INGEST_JOB_STATE_UNSPECIFIED: IngestJobState
INGEST_JOB_STATE_RUNNING: IngestJobState
INGEST_JOB_STATE_INDEXING: IngestJobState
INGEST_JOB_STATE_DONE: IngestJobState
INGEST_JOB_STATE_INTERRUPTED: IngestJobState

class QueryRequest(_message.Message):
    __slots__ = ("query", "top_k", "filters")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    query: str
    top_k: int
    filters: _containers.RepeatedCompositeFieldContainer[_common_pb2.MetadataFilter]
    def __init__(self, query: _Optional[str] = ..., top_k: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[_common_pb2.MetadataFilter, _Mapping]]] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("id", "text", "score", "metadata", "citation")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    score: float
    metadata: _containers.ScalarMap[str, str]
    citation: int
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., score: _Optional[float] = ..., metadata: _Optional[_Mapping[str, str]] = ..., citation: _Optional[int] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("upstream", "tier", "outcome", "latency_ms", "error", "retry", "hedge", "breaker_state", "attempt", "usage", "model")
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    HEDGE_FIELD_NUMBER: _ClassVar[int]
    BREAKER_STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    upstream: str
    tier: int
    outcome: str
    latency_ms: float
    error: str
    retry: bool
    hedge: bool
    breaker_state: CircuitState
    attempt: int
    usage: _generator_pb2.GenerationUsage
    model: str
    def __init__(self, upstream: _Optional[str] = ..., tier: _Optional[int] = ..., outcome: _Optional[str] = ..., latency_ms: _Optional[float] = ..., error: _Optional[str] = ..., retry: _Optional[bool] = ..., hedge: _Optional[bool] = ..., breaker_state: _Optional[_Union[CircuitState, str]] = ..., attempt: _Optional[int] = ..., usage: _Optional[_Union[_generator_pb2.GenerationUsage, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class StageReport(_message.Message):
    __slots__ = ("stage", "served_by", "tier", "latency_ms", "attempts", "degraded", "detail")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    served_by: str
    tier: int
    latency_ms: float
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    degraded: bool
    detail: str
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., served_by: _Optional[str] = ..., tier: _Optional[int] = ..., latency_ms: _Optional[float] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., degraded: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("answer", "sources", "request_id", "trace_id", "cached", "degraded", "stages", "retry_after", "model", "cost_usd")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    answer: str
    sources: _containers.RepeatedCompositeFieldContainer[Source]
    request_id: str
    trace_id: str
    cached: bool
    degraded: bool
    stages: _containers.RepeatedCompositeFieldContainer[StageReport]
    retry_after: _duration_pb2.Duration
    model: str
    cost_usd: float
    def __init__(self, answer: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[Source, _Mapping]]] = ..., request_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., cached: _Optional[bool] = ..., degraded: _Optional[bool] = ..., stages: _Optional[_Iterable[_Union[StageReport, _Mapping]]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., model: _Optional[str] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class StreamQueryRequest(_message.Message):
    __slots__ = ("query", "top_k", "filters")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    query: str
    top_k: int
    filters: _containers.RepeatedCompositeFieldContainer[_common_pb2.MetadataFilter]
    def __init__(self, query: _Optional[str] = ..., top_k: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[_common_pb2.MetadataFilter, _Mapping]]] = ...) -> None: ...

class SourcesEvent(_message.Message):
    __slots__ = ("sources",)
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[Source]
    def __init__(self, sources: _Optional[_Iterable[_Union[Source, _Mapping]]] = ...) -> None: ...

class FinalEvent(_message.Message):
    __slots__ = ("request_id", "trace_id", "cached", "degraded", "stages", "retry_after", "model", "answer", "cost_usd")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    trace_id: str
    cached: bool
    degraded: bool
    stages: _containers.RepeatedCompositeFieldContainer[StageReport]
    retry_after: _duration_pb2.Duration
    model: str
    answer: str
    cost_usd: float
    def __init__(self, request_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., cached: _Optional[bool] = ..., degraded: _Optional[bool] = ..., stages: _Optional[_Iterable[_Union[StageReport, _Mapping]]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., model: _Optional[str] = ..., answer: _Optional[str] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class Withdrawal(_message.Message):
    __slots__ = ("upstream", "tier", "reason", "withdrawn_chars")
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_CHARS_FIELD_NUMBER: _ClassVar[int]
    upstream: str
    tier: int
    reason: str
    withdrawn_chars: int
    def __init__(self, upstream: _Optional[str] = ..., tier: _Optional[int] = ..., reason: _Optional[str] = ..., withdrawn_chars: _Optional[int] = ...) -> None: ...

class StreamQueryResponse(_message.Message):
    __slots__ = ("sources", "chunk", "final", "withdrawn")
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    sources: SourcesEvent
    chunk: str
    final: FinalEvent
    withdrawn: Withdrawal
    def __init__(self, sources: _Optional[_Union[SourcesEvent, _Mapping]] = ..., chunk: _Optional[str] = ..., final: _Optional[_Union[FinalEvent, _Mapping]] = ..., withdrawn: _Optional[_Union[Withdrawal, _Mapping]] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.Document]
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.Document, _Mapping]]] = ...) -> None: ...

class RetrieverWrite(_message.Message):
    __slots__ = ("retriever", "status", "reason")
    RETRIEVER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    retriever: str
    status: WriteStatus
    reason: str
    def __init__(self, retriever: _Optional[str] = ..., status: _Optional[_Union[WriteStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class IngestResult(_message.Message):
    __slots__ = ("id", "index", "status", "reason", "missing", "chunks", "writes")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    id: str
    index: int
    status: IngestStatus
    reason: str
    missing: _containers.RepeatedScalarFieldContainer[str]
    chunks: int
    writes: _containers.RepeatedCompositeFieldContainer[RetrieverWrite]
    def __init__(self, id: _Optional[str] = ..., index: _Optional[int] = ..., status: _Optional[_Union[IngestStatus, str]] = ..., reason: _Optional[str] = ..., missing: _Optional[_Iterable[str]] = ..., chunks: _Optional[int] = ..., writes: _Optional[_Iterable[_Union[RetrieverWrite, _Mapping]]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("results", "succeeded", "failed", "elapsed_ms", "models", "unchanged", "chunks", "queued", "partial")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[IngestResult]
    succeeded: int
    failed: int
    elapsed_ms: float
    models: _containers.RepeatedScalarFieldContainer[str]
    unchanged: int
    chunks: int
    queued: int
    partial: int
    def __init__(self, results: _Optional[_Iterable[_Union[IngestResult, _Mapping]]] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., elapsed_ms: _Optional[float] = ..., models: _Optional[_Iterable[str]] = ..., unchanged: _Optional[int] = ..., chunks: _Optional[int] = ..., queued: _Optional[int] = ..., partial: _Optional[int] = ...) -> None: ...

class DeleteDocumentsRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResult(_message.Message):
    __slots__ = ("id", "found", "missing", "writes")
    ID_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    id: str
    found: bool
    missing: _containers.RepeatedScalarFieldContainer[str]
    writes: _containers.RepeatedCompositeFieldContainer[RetrieverWrite]
    def __init__(self, id: _Optional[str] = ..., found: _Optional[bool] = ..., missing: _Optional[_Iterable[str]] = ..., writes: _Optional[_Iterable[_Union[RetrieverWrite, _Mapping]]] = ...) -> None: ...

class DeleteDocumentsResponse(_message.Message):
    __slots__ = ("results", "evicted_answers")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    EVICTED_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DeleteResult]
    evicted_answers: int
    def __init__(self, results: _Optional[_Iterable[_Union[DeleteResult, _Mapping]]] = ..., evicted_answers: _Optional[int] = ...) -> None: ...

class ListDocumentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDocumentsResponse(_message.Message):
    __slots__ = ("documents", "next_page_token", "served_by")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.StoredDocument]
    next_page_token: str
    served_by: str
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.StoredDocument, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., served_by: _Optional[str] = ...) -> None: ...

class GetSystemHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BreakerStatus(_message.Message):
    __slots__ = ("state", "failure_rate", "slow_call_rate", "calls_in_window", "time_in_state", "next_probe_time", "consecutive_trips", "rejected_calls", "late_results", "transitions")
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_RATE_FIELD_NUMBER: _ClassVar[int]
    SLOW_CALL_RATE_FIELD_NUMBER: _ClassVar[int]
    CALLS_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_STATE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PROBE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_TRIPS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_CALLS_FIELD_NUMBER: _ClassVar[int]
    LATE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    state: CircuitState
    failure_rate: float
    slow_call_rate: float
    calls_in_window: int
    time_in_state: _duration_pb2.Duration
    next_probe_time: _timestamp_pb2.Timestamp
    consecutive_trips: int
    rejected_calls: int
    late_results: int
    transitions: int
    def __init__(self, state: _Optional[_Union[CircuitState, str]] = ..., failure_rate: _Optional[float] = ..., slow_call_rate: _Optional[float] = ..., calls_in_window: _Optional[int] = ..., time_in_state: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., next_probe_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consecutive_trips: _Optional[int] = ..., rejected_calls: _Optional[int] = ..., late_results: _Optional[int] = ..., transitions: _Optional[int] = ...) -> None: ...

class RetryBudgetStatus(_message.Message):
    __slots__ = ("requests", "spent", "allowance", "rejected")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    requests: int
    spent: int
    allowance: float
    rejected: int
    def __init__(self, requests: _Optional[int] = ..., spent: _Optional[int] = ..., allowance: _Optional[float] = ..., rejected: _Optional[int] = ...) -> None: ...

class RetryDecisionCount(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    count: int
    def __init__(self, reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class UpstreamStatus(_message.Message):
    __slots__ = ("name", "component", "address", "tier", "health", "last_outcome", "last_error", "last_latency_ms", "breaker", "in_flight", "p95_latency_ms", "retry_budget", "retry_decisions", "degraded_reasons", "hedges_won", "hedges_lost", "recent_slow_call_rate", "recent_failure_rate", "oldest_in_flight", "slow_call_threshold")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    LAST_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    RETRY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    RETRY_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASONS_FIELD_NUMBER: _ClassVar[int]
    HEDGES_WON_FIELD_NUMBER: _ClassVar[int]
    HEDGES_LOST_FIELD_NUMBER: _ClassVar[int]
    RECENT_SLOW_CALL_RATE_FIELD_NUMBER: _ClassVar[int]
    RECENT_FAILURE_RATE_FIELD_NUMBER: _ClassVar[int]
    OLDEST_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    SLOW_CALL_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    name: str
    component: str
    address: str
    tier: int
    health: UpstreamHealthStatus
    last_outcome: str
    last_error: str
    last_latency_ms: float
    breaker: BreakerStatus
    in_flight: int
    p95_latency_ms: float
    retry_budget: RetryBudgetStatus
    retry_decisions: _containers.RepeatedCompositeFieldContainer[RetryDecisionCount]
    degraded_reasons: _containers.RepeatedCompositeFieldContainer[DegradedReason]
    hedges_won: int
    hedges_lost: int
    recent_slow_call_rate: float
    recent_failure_rate: float
    oldest_in_flight: _duration_pb2.Duration
    slow_call_threshold: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., component: _Optional[str] = ..., address: _Optional[str] = ..., tier: _Optional[int] = ..., health: _Optional[_Union[UpstreamHealthStatus, str]] = ..., last_outcome: _Optional[str] = ..., last_error: _Optional[str] = ..., last_latency_ms: _Optional[float] = ..., breaker: _Optional[_Union[BreakerStatus, _Mapping]] = ..., in_flight: _Optional[int] = ..., p95_latency_ms: _Optional[float] = ..., retry_budget: _Optional[_Union[RetryBudgetStatus, _Mapping]] = ..., retry_decisions: _Optional[_Iterable[_Union[RetryDecisionCount, _Mapping]]] = ..., degraded_reasons: _Optional[_Iterable[_Union[DegradedReason, _Mapping]]] = ..., hedges_won: _Optional[int] = ..., hedges_lost: _Optional[int] = ..., recent_slow_call_rate: _Optional[float] = ..., recent_failure_rate: _Optional[float] = ..., oldest_in_flight: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., slow_call_threshold: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DegradedReason(_message.Message):
    __slots__ = ("reason", "detail")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    reason: str
    detail: str
    def __init__(self, reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class GetSystemHealthResponse(_message.Message):
    __slots__ = ("status", "upstreams", "uptime", "version", "outboxes")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAMS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTBOXES_FIELD_NUMBER: _ClassVar[int]
    status: SystemStatus
    upstreams: _containers.RepeatedCompositeFieldContainer[UpstreamStatus]
    uptime: _duration_pb2.Duration
    version: str
    outboxes: _containers.RepeatedCompositeFieldContainer[OutboxStatus]
    def __init__(self, status: _Optional[_Union[SystemStatus, str]] = ..., upstreams: _Optional[_Iterable[_Union[UpstreamStatus, _Mapping]]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., version: _Optional[str] = ..., outboxes: _Optional[_Iterable[_Union[OutboxStatus, _Mapping]]] = ...) -> None: ...

class OutboxStatus(_message.Message):
    __slots__ = ("retriever", "backend", "backlog", "dead_letters", "last_error")
    RETRIEVER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    retriever: str
    backend: str
    backlog: int
    dead_letters: int
    last_error: str
    def __init__(self, retriever: _Optional[str] = ..., backend: _Optional[str] = ..., backlog: _Optional[int] = ..., dead_letters: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class StartIngestJobRequest(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.Document]
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.Document, _Mapping]]] = ...) -> None: ...

class StartIngestJobResponse(_message.Message):
    __slots__ = ("job_id", "accepted")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    accepted: int
    def __init__(self, job_id: _Optional[str] = ..., accepted: _Optional[int] = ...) -> None: ...

class GetIngestJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class RetrieverProgress(_message.Message):
    __slots__ = ("retriever", "queued", "indexed", "failed")
    RETRIEVER_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    INDEXED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    retriever: str
    queued: int
    indexed: int
    failed: int
    def __init__(self, retriever: _Optional[str] = ..., queued: _Optional[int] = ..., indexed: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class GetIngestJobResponse(_message.Message):
    __slots__ = ("job_id", "state", "accepted", "embedded", "unchanged", "failed", "retrievers", "failures", "elapsed_s")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RETRIEVERS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: IngestJobState
    accepted: int
    embedded: int
    unchanged: int
    failed: int
    retrievers: _containers.RepeatedCompositeFieldContainer[RetrieverProgress]
    failures: _containers.RepeatedScalarFieldContainer[str]
    elapsed_s: float
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[IngestJobState, str]] = ..., accepted: _Optional[int] = ..., embedded: _Optional[int] = ..., unchanged: _Optional[int] = ..., failed: _Optional[int] = ..., retrievers: _Optional[_Iterable[_Union[RetrieverProgress, _Mapping]]] = ..., failures: _Optional[_Iterable[str]] = ..., elapsed_s: _Optional[float] = ...) -> None: ...

class SubmitFeedbackRequest(_message.Message):
    __slots__ = ("request_id", "rating", "comment")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    rating: int
    comment: str
    def __init__(self, request_id: _Optional[str] = ..., rating: _Optional[int] = ..., comment: _Optional[str] = ...) -> None: ...

class SubmitFeedbackResponse(_message.Message):
    __slots__ = ("request_id", "recorded_at")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    recorded_at: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

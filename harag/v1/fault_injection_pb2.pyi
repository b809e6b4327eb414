import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Fault(_message.Message):
    __slots__ = ("error_rate", "error_code", "latency", "latency_rate", "hang", "down", "methods", "fail_stream_after")
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_RATE_FIELD_NUMBER: _ClassVar[int]
    HANG_FIELD_NUMBER: _ClassVar[int]
    DOWN_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    FAIL_STREAM_AFTER_FIELD_NUMBER: _ClassVar[int]
    error_rate: float
    error_code: int
    latency: _duration_pb2.Duration
    latency_rate: float
    hang: bool
    down: bool
    methods: _containers.RepeatedScalarFieldContainer[str]
    fail_stream_after: int
    def __init__(self, error_rate: _Optional[float] = ..., error_code: _Optional[int] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., latency_rate: _Optional[float] = ..., hang: _Optional[bool] = ..., down: _Optional[bool] = ..., methods: _Optional[_Iterable[str]] = ..., fail_stream_after: _Optional[int] = ...) -> None: ...

class SetFaultRequest(_message.Message):
    __slots__ = ("fault",)
    FAULT_FIELD_NUMBER: _ClassVar[int]
    fault: Fault
    def __init__(self, fault: _Optional[_Union[Fault, _Mapping]] = ...) -> None: ...

class SetFaultResponse(_message.Message):
    __slots__ = ("fault",)
    FAULT_FIELD_NUMBER: _ClassVar[int]
    fault: Fault
    def __init__(self, fault: _Optional[_Union[Fault, _Mapping]] = ...) -> None: ...

class ClearFaultsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClearFaultsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFaultsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFaultsResponse(_message.Message):
    __slots__ = ("fault", "injected_total")
    FAULT_FIELD_NUMBER: _ClassVar[int]
    INJECTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    fault: Fault
    injected_total: int
    def __init__(self, fault: _Optional[_Union[Fault, _Mapping]] = ..., injected_total: _Optional[int] = ...) -> None: ...

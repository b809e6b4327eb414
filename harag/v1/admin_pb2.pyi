from harag.v1 import gateway_pb2 as _gateway_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BreakerAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREAKER_ACTION_UNSPECIFIED: _ClassVar[BreakerAction]
    BREAKER_ACTION_FORCE_OPEN: _ClassVar[BreakerAction]
    BREAKER_ACTION_DISABLE: _ClassVar[BreakerAction]
    BREAKER_ACTION_RESET: _ClassVar[BreakerAction]
BREAKER_ACTION_UNSPECIFIED: BreakerAction
BREAKER_ACTION_FORCE_OPEN: BreakerAction
BREAKER_ACTION_DISABLE: BreakerAction
BREAKER_ACTION_RESET: BreakerAction

class ListBreakersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpstreamBreaker(_message.Message):
    __slots__ = ("upstream", "breaker")
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    upstream: str
    breaker: _gateway_pb2.BreakerStatus
    def __init__(self, upstream: _Optional[str] = ..., breaker: _Optional[_Union[_gateway_pb2.BreakerStatus, _Mapping]] = ...) -> None: ...

class ListBreakersResponse(_message.Message):
    __slots__ = ("breakers",)
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    breakers: _containers.RepeatedCompositeFieldContainer[UpstreamBreaker]
    def __init__(self, breakers: _Optional[_Iterable[_Union[UpstreamBreaker, _Mapping]]] = ...) -> None: ...

class TransitionBreakerRequest(_message.Message):
    __slots__ = ("upstream", "action")
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    upstream: str
    action: BreakerAction
    def __init__(self, upstream: _Optional[str] = ..., action: _Optional[_Union[BreakerAction, str]] = ...) -> None: ...

class TransitionBreakerResponse(_message.Message):
    __slots__ = ("breaker",)
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    breaker: UpstreamBreaker
    def __init__(self, breaker: _Optional[_Union[UpstreamBreaker, _Mapping]] = ...) -> None: ...

class RecordEvaluationRequest(_message.Message):
    __slots__ = ("k", "mrr", "recall", "questions", "question_set")
    K_FIELD_NUMBER: _ClassVar[int]
    MRR_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    QUESTION_SET_FIELD_NUMBER: _ClassVar[int]
    k: int
    mrr: float
    recall: float
    questions: int
    question_set: str
    def __init__(self, k: _Optional[int] = ..., mrr: _Optional[float] = ..., recall: _Optional[float] = ..., questions: _Optional[int] = ..., question_set: _Optional[str] = ...) -> None: ...

class RecordEvaluationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

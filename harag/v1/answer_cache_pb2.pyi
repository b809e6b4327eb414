from harag.v1 import common_pb2 as _common_pb2
from harag.v1 import gateway_pb2 as _gateway_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CachedAnswer(_message.Message):
    __slots__ = ("answer", "model", "sources", "stages")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    answer: str
    model: str
    sources: _containers.RepeatedCompositeFieldContainer[_common_pb2.ScoredDocument]
    stages: _containers.RepeatedCompositeFieldContainer[_gateway_pb2.StageReport]
    def __init__(self, answer: _Optional[str] = ..., model: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[_common_pb2.ScoredDocument, _Mapping]]] = ..., stages: _Optional[_Iterable[_Union[_gateway_pb2.StageReport, _Mapping]]] = ...) -> None: ...

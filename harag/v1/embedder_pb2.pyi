from harag.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedInputType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMBED_INPUT_TYPE_UNSPECIFIED: _ClassVar[EmbedInputType]
    EMBED_INPUT_TYPE_QUERY: _ClassVar[EmbedInputType]
    EMBED_INPUT_TYPE_PASSAGE: _ClassVar[EmbedInputType]
EMBED_INPUT_TYPE_UNSPECIFIED: EmbedInputType
EMBED_INPUT_TYPE_QUERY: EmbedInputType
EMBED_INPUT_TYPE_PASSAGE: EmbedInputType

class EmbedRequest(_message.Message):
    __slots__ = ("texts", "input_type")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    input_type: EmbedInputType
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., input_type: _Optional[_Union[EmbedInputType, str]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "model", "dimension")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    model: str
    dimension: int
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ..., model: _Optional[str] = ..., dimension: _Optional[int] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("model", "dimension", "max_batch_size", "max_text_chars")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    model: str
    dimension: int
    max_batch_size: int
    max_text_chars: int
    def __init__(self, model: _Optional[str] = ..., dimension: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., max_text_chars: _Optional[int] = ...) -> None: ...

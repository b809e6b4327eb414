from harag.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetrievalMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RETRIEVAL_MODE_UNSPECIFIED: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_DENSE: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_LEXICAL: _ClassVar[RetrievalMode]
RETRIEVAL_MODE_UNSPECIFIED: RetrievalMode
RETRIEVAL_MODE_DENSE: RetrievalMode
RETRIEVAL_MODE_LEXICAL: RetrievalMode

class SearchRequest(_message.Message):
    __slots__ = ("query_text", "query_embedding", "model", "top_k", "filters")
    QUERY_TEXT_FIELD_NUMBER: _ClassVar[int]
    QUERY_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    query_text: str
    query_embedding: _common_pb2.Embedding
    model: str
    top_k: int
    filters: _containers.RepeatedCompositeFieldContainer[_common_pb2.MetadataFilter]
    def __init__(self, query_text: _Optional[str] = ..., query_embedding: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., model: _Optional[str] = ..., top_k: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[_common_pb2.MetadataFilter, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("documents", "mode", "index_size")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    INDEX_SIZE_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.ScoredDocument]
    mode: RetrievalMode
    index_size: int
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.ScoredDocument, _Mapping]]] = ..., mode: _Optional[_Union[RetrievalMode, str]] = ..., index_size: _Optional[int] = ...) -> None: ...

class IndexedDocument(_message.Message):
    __slots__ = ("document", "embeddings")
    class EmbeddingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Embedding
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ...) -> None: ...
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    document: _common_pb2.Document
    embeddings: _containers.MessageMap[str, _common_pb2.Embedding]
    def __init__(self, document: _Optional[_Union[_common_pb2.Document, _Mapping]] = ..., embeddings: _Optional[_Mapping[str, _common_pb2.Embedding]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[IndexedDocument]
    def __init__(self, documents: _Optional[_Iterable[_Union[IndexedDocument, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelIndexStats(_message.Message):
    __slots__ = ("model", "dimension", "vectors")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    model: str
    dimension: int
    vectors: int
    def __init__(self, model: _Optional[str] = ..., dimension: _Optional[int] = ..., vectors: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("documents", "mode", "models", "disk_bytes")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    documents: int
    mode: RetrievalMode
    models: _containers.RepeatedCompositeFieldContainer[ModelIndexStats]
    disk_bytes: int
    def __init__(self, documents: _Optional[int] = ..., mode: _Optional[_Union[RetrievalMode, str]] = ..., models: _Optional[_Iterable[_Union[ModelIndexStats, _Mapping]]] = ..., disk_bytes: _Optional[int] = ...) -> None: ...

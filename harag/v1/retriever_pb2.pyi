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
    __slots__ = ("documents", "mode", "index_size", "trimmed")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    INDEX_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRIMMED_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.ScoredDocument]
    mode: RetrievalMode
    index_size: int
    trimmed: str
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.ScoredDocument, _Mapping]]] = ..., mode: _Optional[_Union[RetrievalMode, str]] = ..., index_size: _Optional[int] = ..., trimmed: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("model", "dimension", "vectors", "index", "memory_bytes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    model: str
    dimension: int
    vectors: int
    index: str
    memory_bytes: int
    def __init__(self, model: _Optional[str] = ..., dimension: _Optional[int] = ..., vectors: _Optional[int] = ..., index: _Optional[str] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("documents", "mode", "models", "disk_bytes", "memory_bytes")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    documents: int
    mode: RetrievalMode
    models: _containers.RepeatedCompositeFieldContainer[ModelIndexStats]
    disk_bytes: int
    memory_bytes: int
    def __init__(self, documents: _Optional[int] = ..., mode: _Optional[_Union[RetrievalMode, str]] = ..., models: _Optional[_Iterable[_Union[ModelIndexStats, _Mapping]]] = ..., disk_bytes: _Optional[int] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class DocumentChunks(_message.Message):
    __slots__ = ("document_id", "content_hash", "chunks")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    content_hash: str
    chunks: _containers.RepeatedCompositeFieldContainer[IndexedDocument]
    def __init__(self, document_id: _Optional[str] = ..., content_hash: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[IndexedDocument, _Mapping]]] = ...) -> None: ...

class ReplaceDocumentsRequest(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[DocumentChunks]
    def __init__(self, documents: _Optional[_Iterable[_Union[DocumentChunks, _Mapping]]] = ...) -> None: ...

class DocumentReplaceResult(_message.Message):
    __slots__ = ("document_id", "stored", "reason", "chunks")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    stored: bool
    reason: str
    chunks: int
    def __init__(self, document_id: _Optional[str] = ..., stored: _Optional[bool] = ..., reason: _Optional[str] = ..., chunks: _Optional[int] = ...) -> None: ...

class ReplaceDocumentsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DocumentReplaceResult]
    def __init__(self, results: _Optional[_Iterable[_Union[DocumentReplaceResult, _Mapping]]] = ...) -> None: ...

class RemoveDocumentsRequest(_message.Message):
    __slots__ = ("document_ids",)
    DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    document_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, document_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveDocumentsResponse(_message.Message):
    __slots__ = ("removed", "chunks_removed")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: _containers.RepeatedScalarFieldContainer[str]
    chunks_removed: int
    def __init__(self, removed: _Optional[_Iterable[str]] = ..., chunks_removed: _Optional[int] = ...) -> None: ...

class GetDocumentHashesRequest(_message.Message):
    __slots__ = ("document_ids",)
    DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    document_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, document_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDocumentHashesResponse(_message.Message):
    __slots__ = ("content_hashes",)
    class ContentHashesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONTENT_HASHES_FIELD_NUMBER: _ClassVar[int]
    content_hashes: _containers.ScalarMap[str, str]
    def __init__(self, content_hashes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListStoredDocumentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStoredDocumentsResponse(_message.Message):
    __slots__ = ("documents", "next_page_token")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.StoredDocument]
    next_page_token: str
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.StoredDocument, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

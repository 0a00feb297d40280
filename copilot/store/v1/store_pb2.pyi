from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StoredChunk(_message.Message):
    __slots__ = ("point_id", "vector", "payload_json", "lexical")
    POINT_ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_FIELD_NUMBER: _ClassVar[int]
    point_id: str
    vector: _containers.RepeatedScalarFieldContainer[float]
    payload_json: str
    lexical: SparseVector
    def __init__(self, point_id: _Optional[str] = ..., vector: _Optional[_Iterable[float]] = ..., payload_json: _Optional[str] = ..., lexical: _Optional[_Union[SparseVector, _Mapping]] = ...) -> None: ...

class SparseVector(_message.Message):
    __slots__ = ("indices", "values")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, indices: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class ReplaceDocumentRequest(_message.Message):
    __slots__ = ("document_id", "chunks", "revision")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    chunks: _containers.RepeatedCompositeFieldContainer[StoredChunk]
    revision: int
    def __init__(self, document_id: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[StoredChunk, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class ReplaceDocumentResponse(_message.Message):
    __slots__ = ("removed_stale",)
    REMOVED_STALE_FIELD_NUMBER: _ClassVar[int]
    removed_stale: int
    def __init__(self, removed_stale: _Optional[int] = ...) -> None: ...

class DeleteDocumentRequest(_message.Message):
    __slots__ = ("document_id", "revision")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    revision: int
    def __init__(self, document_id: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class DeleteDocumentResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class GetDocumentHashesRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    def __init__(self, document_id: _Optional[str] = ...) -> None: ...

class GetDocumentHashesResponse(_message.Message):
    __slots__ = ("stored", "content_hash", "access_hash", "chunk_count", "unannounced", "revision")
    STORED_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    ACCESS_HASH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNANNOUNCED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    content_hash: str
    access_hash: str
    chunk_count: int
    unannounced: str
    revision: int
    def __init__(self, stored: _Optional[bool] = ..., content_hash: _Optional[str] = ..., access_hash: _Optional[str] = ..., chunk_count: _Optional[int] = ..., unannounced: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class GetDocumentAccessRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    def __init__(self, document_id: _Optional[str] = ...) -> None: ...

class GetDocumentAccessResponse(_message.Message):
    __slots__ = ("stored", "tenant", "acl", "classification", "title", "uri")
    STORED_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ACL_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    tenant: str
    acl: _containers.RepeatedScalarFieldContainer[str]
    classification: str
    title: str
    uri: str
    def __init__(self, stored: _Optional[bool] = ..., tenant: _Optional[str] = ..., acl: _Optional[_Iterable[str]] = ..., classification: _Optional[str] = ..., title: _Optional[str] = ..., uri: _Optional[str] = ...) -> None: ...

class UpdateAccessRequest(_message.Message):
    __slots__ = ("document_id", "tenant", "acl", "classification", "access_hash", "fingerprint", "unannounced", "revision", "content_hash")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ACL_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    ACCESS_HASH_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    UNANNOUNCED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    tenant: str
    acl: _containers.RepeatedScalarFieldContainer[str]
    classification: str
    access_hash: str
    fingerprint: str
    unannounced: str
    revision: int
    content_hash: str
    def __init__(self, document_id: _Optional[str] = ..., tenant: _Optional[str] = ..., acl: _Optional[_Iterable[str]] = ..., classification: _Optional[str] = ..., access_hash: _Optional[str] = ..., fingerprint: _Optional[str] = ..., unannounced: _Optional[str] = ..., revision: _Optional[int] = ..., content_hash: _Optional[str] = ...) -> None: ...

class UpdateAccessResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class MarkAnnouncedRequest(_message.Message):
    __slots__ = ("document_id", "unannounced")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    UNANNOUNCED_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    unannounced: str
    def __init__(self, document_id: _Optional[str] = ..., unannounced: _Optional[str] = ...) -> None: ...

class MarkAnnouncedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("vector", "tenant", "principals", "limit", "lexical", "audience", "uri_prefixes", "document_types", "modified_after", "modified_before", "with_vector")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    URI_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AFTER_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTOR_FIELD_NUMBER: _ClassVar[int]
    vector: _containers.RepeatedScalarFieldContainer[float]
    tenant: str
    principals: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    lexical: SparseVector
    audience: _containers.RepeatedCompositeFieldContainer[Principals]
    uri_prefixes: _containers.RepeatedScalarFieldContainer[str]
    document_types: _containers.RepeatedScalarFieldContainer[str]
    modified_after: float
    modified_before: float
    with_vector: bool
    def __init__(self, vector: _Optional[_Iterable[float]] = ..., tenant: _Optional[str] = ..., principals: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., lexical: _Optional[_Union[SparseVector, _Mapping]] = ..., audience: _Optional[_Iterable[_Union[Principals, _Mapping]]] = ..., uri_prefixes: _Optional[_Iterable[str]] = ..., document_types: _Optional[_Iterable[str]] = ..., modified_after: _Optional[float] = ..., modified_before: _Optional[float] = ..., with_vector: _Optional[bool] = ...) -> None: ...

class Principals(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entries: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ScoredChunk]
    def __init__(self, chunks: _Optional[_Iterable[_Union[ScoredChunk, _Mapping]]] = ...) -> None: ...

class ScoredChunk(_message.Message):
    __slots__ = ("point_id", "score", "payload_json", "vector")
    POINT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    point_id: str
    score: float
    payload_json: str
    vector: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, point_id: _Optional[str] = ..., score: _Optional[float] = ..., payload_json: _Optional[str] = ..., vector: _Optional[_Iterable[float]] = ...) -> None: ...

class CountChunksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CountChunksResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class PurgeTombstonesRequest(_message.Message):
    __slots__ = ("before_revision",)
    BEFORE_REVISION_FIELD_NUMBER: _ClassVar[int]
    before_revision: int
    def __init__(self, before_revision: _Optional[int] = ...) -> None: ...

class PurgeTombstonesResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

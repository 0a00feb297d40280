import datetime

from copilot.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_MODE_UNSPECIFIED: _ClassVar[SearchMode]
    SEARCH_MODE_DENSE: _ClassVar[SearchMode]
    SEARCH_MODE_SPARSE: _ClassVar[SearchMode]
    SEARCH_MODE_HYBRID: _ClassVar[SearchMode]
SEARCH_MODE_UNSPECIFIED: SearchMode
SEARCH_MODE_DENSE: SearchMode
SEARCH_MODE_SPARSE: SearchMode
SEARCH_MODE_HYBRID: SearchMode

class SearchRequest(_message.Message):
    __slots__ = ("query", "top_k", "filters", "audience", "mode", "rerank", "max_per_document")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    query: str
    top_k: int
    filters: SearchFilters
    audience: _containers.RepeatedCompositeFieldContainer[_common_pb2.Audience]
    mode: SearchMode
    rerank: bool
    max_per_document: int
    def __init__(self, query: _Optional[str] = ..., top_k: _Optional[int] = ..., filters: _Optional[_Union[SearchFilters, _Mapping]] = ..., audience: _Optional[_Iterable[_Union[_common_pb2.Audience, _Mapping]]] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., rerank: _Optional[bool] = ..., max_per_document: _Optional[int] = ...) -> None: ...

class SearchFilters(_message.Message):
    __slots__ = ("uri_prefixes", "document_types", "modified_after", "modified_before")
    URI_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AFTER_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    uri_prefixes: _containers.RepeatedScalarFieldContainer[str]
    document_types: _containers.RepeatedScalarFieldContainer[str]
    modified_after: _timestamp_pb2.Timestamp
    modified_before: _timestamp_pb2.Timestamp
    def __init__(self, uri_prefixes: _Optional[_Iterable[str]] = ..., document_types: _Optional[_Iterable[str]] = ..., modified_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., modified_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("passages",)
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    passages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Passage]
    def __init__(self, passages: _Optional[_Iterable[_Union[_common_pb2.Passage, _Mapping]]] = ...) -> None: ...

class ExplainAccessRequest(_message.Message):
    __slots__ = ("document_id", "username")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    username: str
    def __init__(self, document_id: _Optional[str] = ..., username: _Optional[str] = ...) -> None: ...

class ExplainAccessResponse(_message.Message):
    __slots__ = ("allowed", "granted_by", "acl", "classification", "title", "uri", "groups_unknown")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    GRANTED_BY_FIELD_NUMBER: _ClassVar[int]
    ACL_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    GROUPS_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    granted_by: _containers.RepeatedScalarFieldContainer[str]
    acl: _containers.RepeatedScalarFieldContainer[str]
    classification: str
    title: str
    uri: str
    groups_unknown: bool
    def __init__(self, allowed: _Optional[bool] = ..., granted_by: _Optional[_Iterable[str]] = ..., acl: _Optional[_Iterable[str]] = ..., classification: _Optional[str] = ..., title: _Optional[str] = ..., uri: _Optional[str] = ..., groups_unknown: _Optional[bool] = ...) -> None: ...

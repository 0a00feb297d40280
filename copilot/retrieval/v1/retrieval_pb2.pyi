from copilot.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("query", "top_k")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    query: str
    top_k: int
    def __init__(self, query: _Optional[str] = ..., top_k: _Optional[int] = ...) -> None: ...

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

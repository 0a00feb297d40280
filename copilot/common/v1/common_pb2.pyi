from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AccessControl(_message.Message):
    __slots__ = ("tenant", "groups", "users", "public", "classification")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    users: _containers.RepeatedScalarFieldContainer[str]
    public: bool
    classification: str
    def __init__(self, tenant: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., users: _Optional[_Iterable[str]] = ..., public: _Optional[bool] = ..., classification: _Optional[str] = ...) -> None: ...

class Passage(_message.Message):
    __slots__ = ("chunk_id", "document_id", "title", "uri", "text", "score", "heading_path", "page", "char_start", "char_end", "access_reason", "suspicious", "suspicion")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    HEADING_PATH_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    CHAR_START_FIELD_NUMBER: _ClassVar[int]
    CHAR_END_FIELD_NUMBER: _ClassVar[int]
    ACCESS_REASON_FIELD_NUMBER: _ClassVar[int]
    SUSPICIOUS_FIELD_NUMBER: _ClassVar[int]
    SUSPICION_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    document_id: str
    title: str
    uri: str
    text: str
    score: float
    heading_path: _containers.RepeatedScalarFieldContainer[str]
    page: int
    char_start: int
    char_end: int
    access_reason: str
    suspicious: bool
    suspicion: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chunk_id: _Optional[str] = ..., document_id: _Optional[str] = ..., title: _Optional[str] = ..., uri: _Optional[str] = ..., text: _Optional[str] = ..., score: _Optional[float] = ..., heading_path: _Optional[_Iterable[str]] = ..., page: _Optional[int] = ..., char_start: _Optional[int] = ..., char_end: _Optional[int] = ..., access_reason: _Optional[str] = ..., suspicious: _Optional[bool] = ..., suspicion: _Optional[_Iterable[str]] = ...) -> None: ...

class Audience(_message.Message):
    __slots__ = ("acl_entries",)
    ACL_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    acl_entries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, acl_entries: _Optional[_Iterable[str]] = ...) -> None: ...

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

class SupportVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUPPORT_VERDICT_UNSPECIFIED: _ClassVar[SupportVerdict]
    SUPPORT_VERDICT_SUPPORTED: _ClassVar[SupportVerdict]
    SUPPORT_VERDICT_UNSUPPORTED: _ClassVar[SupportVerdict]
    SUPPORT_VERDICT_UNCITED: _ClassVar[SupportVerdict]
    SUPPORT_VERDICT_INVALID: _ClassVar[SupportVerdict]

class DocumentChange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_CHANGE_UNSPECIFIED: _ClassVar[DocumentChange]
    DOCUMENT_CHANGE_INGESTED: _ClassVar[DocumentChange]
    DOCUMENT_CHANGE_UPDATED: _ClassVar[DocumentChange]
    DOCUMENT_CHANGE_DELETED: _ClassVar[DocumentChange]
    DOCUMENT_CHANGE_FAILED: _ClassVar[DocumentChange]

class IngestAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INGEST_ACTION_UNSPECIFIED: _ClassVar[IngestAction]
    INGEST_ACTION_INGEST: _ClassVar[IngestAction]
    INGEST_ACTION_DELETE: _ClassVar[IngestAction]

class FeedbackRating(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_RATING_UNSPECIFIED: _ClassVar[FeedbackRating]
    FEEDBACK_RATING_POSITIVE: _ClassVar[FeedbackRating]
    FEEDBACK_RATING_NEGATIVE: _ClassVar[FeedbackRating]
    FEEDBACK_RATING_REPORTED: _ClassVar[FeedbackRating]
SUPPORT_VERDICT_UNSPECIFIED: SupportVerdict
SUPPORT_VERDICT_SUPPORTED: SupportVerdict
SUPPORT_VERDICT_UNSUPPORTED: SupportVerdict
SUPPORT_VERDICT_UNCITED: SupportVerdict
SUPPORT_VERDICT_INVALID: SupportVerdict
DOCUMENT_CHANGE_UNSPECIFIED: DocumentChange
DOCUMENT_CHANGE_INGESTED: DocumentChange
DOCUMENT_CHANGE_UPDATED: DocumentChange
DOCUMENT_CHANGE_DELETED: DocumentChange
DOCUMENT_CHANGE_FAILED: DocumentChange
INGEST_ACTION_UNSPECIFIED: IngestAction
INGEST_ACTION_INGEST: IngestAction
INGEST_ACTION_DELETE: IngestAction
FEEDBACK_RATING_UNSPECIFIED: FeedbackRating
FEEDBACK_RATING_POSITIVE: FeedbackRating
FEEDBACK_RATING_NEGATIVE: FeedbackRating
FEEDBACK_RATING_REPORTED: FeedbackRating

class InteractionEvent(_message.Message):
    __slots__ = ("event_id", "occurred_at", "user_id", "groups", "tenant", "conversation_id", "question", "answer", "passages", "cited_sources", "refused", "model", "prompt_tokens", "completion_tokens", "retrieval_ms", "first_token_ms", "total_ms", "sentences", "roles", "interrupted")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    CITED_SOURCES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    occurred_at: _timestamp_pb2.Timestamp
    user_id: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    tenant: str
    conversation_id: str
    question: str
    answer: str
    passages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Passage]
    cited_sources: _containers.RepeatedScalarFieldContainer[int]
    refused: bool
    model: str
    prompt_tokens: int
    completion_tokens: int
    retrieval_ms: float
    first_token_ms: float
    total_ms: float
    sentences: _containers.RepeatedCompositeFieldContainer[SentenceSupport]
    roles: _containers.RepeatedScalarFieldContainer[str]
    interrupted: bool
    def __init__(self, event_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_id: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., tenant: _Optional[str] = ..., conversation_id: _Optional[str] = ..., question: _Optional[str] = ..., answer: _Optional[str] = ..., passages: _Optional[_Iterable[_Union[_common_pb2.Passage, _Mapping]]] = ..., cited_sources: _Optional[_Iterable[int]] = ..., refused: _Optional[bool] = ..., model: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., retrieval_ms: _Optional[float] = ..., first_token_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., sentences: _Optional[_Iterable[_Union[SentenceSupport, _Mapping]]] = ..., roles: _Optional[_Iterable[str]] = ..., interrupted: _Optional[bool] = ...) -> None: ...

class SentenceSupport(_message.Message):
    __slots__ = ("text", "cited", "support", "verdict", "supported_by")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CITED_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_BY_FIELD_NUMBER: _ClassVar[int]
    text: str
    cited: _containers.RepeatedScalarFieldContainer[int]
    support: float
    verdict: SupportVerdict
    supported_by: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, text: _Optional[str] = ..., cited: _Optional[_Iterable[int]] = ..., support: _Optional[float] = ..., verdict: _Optional[_Union[SupportVerdict, str]] = ..., supported_by: _Optional[_Iterable[int]] = ...) -> None: ...

class DocumentEvent(_message.Message):
    __slots__ = ("event_id", "occurred_at", "document_id", "uri", "change", "chunk_count", "reason", "access")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    occurred_at: _timestamp_pb2.Timestamp
    document_id: str
    uri: str
    change: DocumentChange
    chunk_count: int
    reason: str
    access: _common_pb2.AccessControl
    def __init__(self, event_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., document_id: _Optional[str] = ..., uri: _Optional[str] = ..., change: _Optional[_Union[DocumentChange, str]] = ..., chunk_count: _Optional[int] = ..., reason: _Optional[str] = ..., access: _Optional[_Union[_common_pb2.AccessControl, _Mapping]] = ...) -> None: ...

class IngestRequestEvent(_message.Message):
    __slots__ = ("event_id", "action", "uri", "filename", "content", "access", "tenant", "requested_by")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    action: IngestAction
    uri: str
    filename: str
    content: bytes
    access: _common_pb2.AccessControl
    tenant: str
    requested_by: str
    def __init__(self, event_id: _Optional[str] = ..., action: _Optional[_Union[IngestAction, str]] = ..., uri: _Optional[str] = ..., filename: _Optional[str] = ..., content: _Optional[bytes] = ..., access: _Optional[_Union[_common_pb2.AccessControl, _Mapping]] = ..., tenant: _Optional[str] = ..., requested_by: _Optional[str] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("event_id", "occurred_at", "interaction_id", "user_id", "rating", "comment", "channel")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    occurred_at: _timestamp_pb2.Timestamp
    interaction_id: str
    user_id: str
    rating: FeedbackRating
    comment: str
    channel: str
    def __init__(self, event_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interaction_id: _Optional[str] = ..., user_id: _Optional[str] = ..., rating: _Optional[_Union[FeedbackRating, str]] = ..., comment: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

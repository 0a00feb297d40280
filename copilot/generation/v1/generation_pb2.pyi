from copilot.common.v1 import common_pb2 as _common_pb2
from copilot.retrieval.v1 import retrieval_pb2 as _retrieval_pb2
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
SUPPORT_VERDICT_UNSPECIFIED: SupportVerdict
SUPPORT_VERDICT_SUPPORTED: SupportVerdict
SUPPORT_VERDICT_UNSUPPORTED: SupportVerdict
SUPPORT_VERDICT_UNCITED: SupportVerdict
SUPPORT_VERDICT_INVALID: SupportVerdict

class AnswerRequest(_message.Message):
    __slots__ = ("question", "conversation_id", "top_k", "model", "audience", "use_tools", "uri_prefixes", "search_mode", "rerank")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    USE_TOOLS_FIELD_NUMBER: _ClassVar[int]
    URI_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    SEARCH_MODE_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    question: str
    conversation_id: str
    top_k: int
    model: str
    audience: _containers.RepeatedCompositeFieldContainer[_common_pb2.Audience]
    use_tools: bool
    uri_prefixes: _containers.RepeatedScalarFieldContainer[str]
    search_mode: _retrieval_pb2.SearchMode
    rerank: bool
    def __init__(self, question: _Optional[str] = ..., conversation_id: _Optional[str] = ..., top_k: _Optional[int] = ..., model: _Optional[str] = ..., audience: _Optional[_Iterable[_Union[_common_pb2.Audience, _Mapping]]] = ..., use_tools: _Optional[bool] = ..., uri_prefixes: _Optional[_Iterable[str]] = ..., search_mode: _Optional[_Union[_retrieval_pb2.SearchMode, str]] = ..., rerank: _Optional[bool] = ...) -> None: ...

class AnswerResponse(_message.Message):
    __slots__ = ("delta", "final", "tool_call")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    delta: str
    final: AnswerFinal
    tool_call: ToolCall
    def __init__(self, delta: _Optional[str] = ..., final: _Optional[_Union[AnswerFinal, _Mapping]] = ..., tool_call: _Optional[_Union[ToolCall, _Mapping]] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("name", "arguments", "result", "failed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    name: str
    arguments: str
    result: str
    failed: bool
    def __init__(self, name: _Optional[str] = ..., arguments: _Optional[str] = ..., result: _Optional[str] = ..., failed: _Optional[bool] = ...) -> None: ...

class AnswerFinal(_message.Message):
    __slots__ = ("interaction_id", "answer", "citations", "refused", "model", "sentences", "conversation_id")
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    interaction_id: str
    answer: str
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    refused: bool
    model: str
    sentences: _containers.RepeatedCompositeFieldContainer[SentenceCheck]
    conversation_id: str
    def __init__(self, interaction_id: _Optional[str] = ..., answer: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ..., refused: _Optional[bool] = ..., model: _Optional[str] = ..., sentences: _Optional[_Iterable[_Union[SentenceCheck, _Mapping]]] = ..., conversation_id: _Optional[str] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("number", "passage")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_FIELD_NUMBER: _ClassVar[int]
    number: int
    passage: _common_pb2.Passage
    def __init__(self, number: _Optional[int] = ..., passage: _Optional[_Union[_common_pb2.Passage, _Mapping]] = ...) -> None: ...

class SentenceCheck(_message.Message):
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
    supported_by: _containers.RepeatedCompositeFieldContainer[Citation]
    def __init__(self, text: _Optional[str] = ..., cited: _Optional[_Iterable[int]] = ..., support: _Optional[float] = ..., verdict: _Optional[_Union[SupportVerdict, str]] = ..., supported_by: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ...) -> None: ...

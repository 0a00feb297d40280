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

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_LOW: _ClassVar[Severity]
    SEVERITY_MEDIUM: _ClassVar[Severity]
    SEVERITY_HIGH: _ClassVar[Severity]

class ReviewItemKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_ITEM_KIND_UNSPECIFIED: _ClassVar[ReviewItemKind]
    REVIEW_ITEM_KIND_FLAG: _ClassVar[ReviewItemKind]
    REVIEW_ITEM_KIND_EVALUATION: _ClassVar[ReviewItemKind]

class ReviewState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_STATE_UNSPECIFIED: _ClassVar[ReviewState]
    REVIEW_STATE_OPEN: _ClassVar[ReviewState]
    REVIEW_STATE_IN_REVIEW: _ClassVar[ReviewState]
    REVIEW_STATE_RESOLVED: _ClassVar[ReviewState]
    REVIEW_STATE_ESCALATED: _ClassVar[ReviewState]

class ReviewVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_VERDICT_UNSPECIFIED: _ClassVar[ReviewVerdict]
    REVIEW_VERDICT_TRUE_POSITIVE: _ClassVar[ReviewVerdict]
    REVIEW_VERDICT_FALSE_POSITIVE: _ClassVar[ReviewVerdict]
    REVIEW_VERDICT_ESCALATE: _ClassVar[ReviewVerdict]
    REVIEW_VERDICT_GOOD: _ClassVar[ReviewVerdict]
    REVIEW_VERDICT_BAD: _ClassVar[ReviewVerdict]

class AgreementScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGREEMENT_SCOPE_UNSPECIFIED: _ClassVar[AgreementScope]
    AGREEMENT_SCOPE_DETECTOR: _ClassVar[AgreementScope]
    AGREEMENT_SCOPE_REVIEWER_PAIR: _ClassVar[AgreementScope]
    AGREEMENT_SCOPE_BATCH: _ClassVar[AgreementScope]
SEVERITY_UNSPECIFIED: Severity
SEVERITY_LOW: Severity
SEVERITY_MEDIUM: Severity
SEVERITY_HIGH: Severity
REVIEW_ITEM_KIND_UNSPECIFIED: ReviewItemKind
REVIEW_ITEM_KIND_FLAG: ReviewItemKind
REVIEW_ITEM_KIND_EVALUATION: ReviewItemKind
REVIEW_STATE_UNSPECIFIED: ReviewState
REVIEW_STATE_OPEN: ReviewState
REVIEW_STATE_IN_REVIEW: ReviewState
REVIEW_STATE_RESOLVED: ReviewState
REVIEW_STATE_ESCALATED: ReviewState
REVIEW_VERDICT_UNSPECIFIED: ReviewVerdict
REVIEW_VERDICT_TRUE_POSITIVE: ReviewVerdict
REVIEW_VERDICT_FALSE_POSITIVE: ReviewVerdict
REVIEW_VERDICT_ESCALATE: ReviewVerdict
REVIEW_VERDICT_GOOD: ReviewVerdict
REVIEW_VERDICT_BAD: ReviewVerdict
AGREEMENT_SCOPE_UNSPECIFIED: AgreementScope
AGREEMENT_SCOPE_DETECTOR: AgreementScope
AGREEMENT_SCOPE_REVIEWER_PAIR: AgreementScope
AGREEMENT_SCOPE_BATCH: AgreementScope

class ListFlagsRequest(_message.Message):
    __slots__ = ("limit", "interaction_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    interaction_id: str
    def __init__(self, limit: _Optional[int] = ..., interaction_id: _Optional[str] = ...) -> None: ...

class ListFlagsResponse(_message.Message):
    __slots__ = ("flags",)
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    flags: _containers.RepeatedCompositeFieldContainer[Flag]
    def __init__(self, flags: _Optional[_Iterable[_Union[Flag, _Mapping]]] = ...) -> None: ...

class Flag(_message.Message):
    __slots__ = ("flag_id", "interaction_id", "detector", "severity", "reason", "evidence", "created_at", "user_id", "question", "spans", "interrupted")
    FLAG_ID_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    flag_id: str
    interaction_id: str
    detector: str
    severity: Severity
    reason: str
    evidence: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    user_id: str
    question: str
    spans: _containers.RepeatedCompositeFieldContainer[EvidenceSpan]
    interrupted: bool
    def __init__(self, flag_id: _Optional[str] = ..., interaction_id: _Optional[str] = ..., detector: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., reason: _Optional[str] = ..., evidence: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_id: _Optional[str] = ..., question: _Optional[str] = ..., spans: _Optional[_Iterable[_Union[EvidenceSpan, _Mapping]]] = ..., interrupted: _Optional[bool] = ...) -> None: ...

class EvidenceSpan(_message.Message):
    __slots__ = ("field", "start", "end")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    field: str
    start: int
    end: int
    def __init__(self, field: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class ListInteractionsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListInteractionsResponse(_message.Message):
    __slots__ = ("interactions",)
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    interactions: _containers.RepeatedCompositeFieldContainer[InteractionSummary]
    def __init__(self, interactions: _Optional[_Iterable[_Union[InteractionSummary, _Mapping]]] = ...) -> None: ...

class InteractionSummary(_message.Message):
    __slots__ = ("interaction_id", "user_id", "question", "answer", "refused", "flag_count", "occurred_at", "interrupted")
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    FLAG_COUNT_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    interaction_id: str
    user_id: str
    question: str
    answer: str
    refused: bool
    flag_count: int
    occurred_at: _timestamp_pb2.Timestamp
    interrupted: bool
    def __init__(self, interaction_id: _Optional[str] = ..., user_id: _Optional[str] = ..., question: _Optional[str] = ..., answer: _Optional[str] = ..., refused: _Optional[bool] = ..., flag_count: _Optional[int] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interrupted: _Optional[bool] = ...) -> None: ...

class ReviewItem(_message.Message):
    __slots__ = ("item_id", "kind", "state", "final_verdict", "detector", "severity", "reason", "evidence", "interaction_id", "batch", "criteria", "question", "answer", "passages", "assignees", "labels_required", "labels", "comments", "created_at", "due_at", "overdue", "resolved_at", "user_id", "spans", "interrupted")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FINAL_VERDICT_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEES_FIELD_NUMBER: _ClassVar[int]
    LABELS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    COMMENTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    kind: ReviewItemKind
    state: ReviewState
    final_verdict: ReviewVerdict
    detector: str
    severity: Severity
    reason: str
    evidence: _containers.RepeatedScalarFieldContainer[str]
    interaction_id: str
    batch: str
    criteria: str
    question: str
    answer: str
    passages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Passage]
    assignees: _containers.RepeatedScalarFieldContainer[str]
    labels_required: int
    labels: _containers.RepeatedCompositeFieldContainer[ReviewLabel]
    comments: _containers.RepeatedCompositeFieldContainer[ReviewComment]
    created_at: _timestamp_pb2.Timestamp
    due_at: _timestamp_pb2.Timestamp
    overdue: bool
    resolved_at: _timestamp_pb2.Timestamp
    user_id: str
    spans: _containers.RepeatedCompositeFieldContainer[EvidenceSpan]
    interrupted: bool
    def __init__(self, item_id: _Optional[str] = ..., kind: _Optional[_Union[ReviewItemKind, str]] = ..., state: _Optional[_Union[ReviewState, str]] = ..., final_verdict: _Optional[_Union[ReviewVerdict, str]] = ..., detector: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., reason: _Optional[str] = ..., evidence: _Optional[_Iterable[str]] = ..., interaction_id: _Optional[str] = ..., batch: _Optional[str] = ..., criteria: _Optional[str] = ..., question: _Optional[str] = ..., answer: _Optional[str] = ..., passages: _Optional[_Iterable[_Union[_common_pb2.Passage, _Mapping]]] = ..., assignees: _Optional[_Iterable[str]] = ..., labels_required: _Optional[int] = ..., labels: _Optional[_Iterable[_Union[ReviewLabel, _Mapping]]] = ..., comments: _Optional[_Iterable[_Union[ReviewComment, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., overdue: _Optional[bool] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_id: _Optional[str] = ..., spans: _Optional[_Iterable[_Union[EvidenceSpan, _Mapping]]] = ..., interrupted: _Optional[bool] = ...) -> None: ...

class ReviewLabel(_message.Message):
    __slots__ = ("reviewer", "verdict", "comment", "labeled_at", "adjudication")
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    LABELED_AT_FIELD_NUMBER: _ClassVar[int]
    ADJUDICATION_FIELD_NUMBER: _ClassVar[int]
    reviewer: str
    verdict: ReviewVerdict
    comment: str
    labeled_at: _timestamp_pb2.Timestamp
    adjudication: bool
    def __init__(self, reviewer: _Optional[str] = ..., verdict: _Optional[_Union[ReviewVerdict, str]] = ..., comment: _Optional[str] = ..., labeled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., adjudication: _Optional[bool] = ...) -> None: ...

class ReviewComment(_message.Message):
    __slots__ = ("author", "text", "created_at")
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    author: str
    text: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, author: _Optional[str] = ..., text: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListReviewItemsRequest(_message.Message):
    __slots__ = ("state", "detector", "batch", "assignee", "limit", "overdue_only", "interrupted_only")
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_ONLY_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_ONLY_FIELD_NUMBER: _ClassVar[int]
    state: ReviewState
    detector: str
    batch: str
    assignee: str
    limit: int
    overdue_only: bool
    interrupted_only: bool
    def __init__(self, state: _Optional[_Union[ReviewState, str]] = ..., detector: _Optional[str] = ..., batch: _Optional[str] = ..., assignee: _Optional[str] = ..., limit: _Optional[int] = ..., overdue_only: _Optional[bool] = ..., interrupted_only: _Optional[bool] = ...) -> None: ...

class ListReviewItemsResponse(_message.Message):
    __slots__ = ("items", "total")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ReviewItem]
    total: int
    def __init__(self, items: _Optional[_Iterable[_Union[ReviewItem, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class GetReviewItemRequest(_message.Message):
    __slots__ = ("item_id",)
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    def __init__(self, item_id: _Optional[str] = ...) -> None: ...

class GetReviewItemResponse(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: ReviewItem
    def __init__(self, item: _Optional[_Union[ReviewItem, _Mapping]] = ...) -> None: ...

class ClaimReviewItemRequest(_message.Message):
    __slots__ = ("item_id",)
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    def __init__(self, item_id: _Optional[str] = ...) -> None: ...

class ClaimReviewItemResponse(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: ReviewItem
    def __init__(self, item: _Optional[_Union[ReviewItem, _Mapping]] = ...) -> None: ...

class LabelReviewItemRequest(_message.Message):
    __slots__ = ("item_id", "verdict", "comment")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    verdict: ReviewVerdict
    comment: str
    def __init__(self, item_id: _Optional[str] = ..., verdict: _Optional[_Union[ReviewVerdict, str]] = ..., comment: _Optional[str] = ...) -> None: ...

class LabelReviewItemResponse(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: ReviewItem
    def __init__(self, item: _Optional[_Union[ReviewItem, _Mapping]] = ...) -> None: ...

class CommentReviewItemRequest(_message.Message):
    __slots__ = ("item_id", "text")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    text: str
    def __init__(self, item_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class CommentReviewItemResponse(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: ReviewItem
    def __init__(self, item: _Optional[_Union[ReviewItem, _Mapping]] = ...) -> None: ...

class GetAgreementRequest(_message.Message):
    __slots__ = ("detector", "batch", "resamples", "confidence")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    RESAMPLES_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    detector: str
    batch: str
    resamples: int
    confidence: float
    def __init__(self, detector: _Optional[str] = ..., batch: _Optional[str] = ..., resamples: _Optional[int] = ..., confidence: _Optional[float] = ...) -> None: ...

class GetAgreementResponse(_message.Message):
    __slots__ = ("agreements",)
    AGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    agreements: _containers.RepeatedCompositeFieldContainer[Agreement]
    def __init__(self, agreements: _Optional[_Iterable[_Union[Agreement, _Mapping]]] = ...) -> None: ...

class Agreement(_message.Message):
    __slots__ = ("scope", "name", "reviewers", "items", "labels", "percent_agreement", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha", "gwet_ac1")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVIEWERS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    COHEN_KAPPA_FIELD_NUMBER: _ClassVar[int]
    FLEISS_KAPPA_FIELD_NUMBER: _ClassVar[int]
    KRIPPENDORFF_ALPHA_FIELD_NUMBER: _ClassVar[int]
    GWET_AC1_FIELD_NUMBER: _ClassVar[int]
    scope: AgreementScope
    name: str
    reviewers: _containers.RepeatedScalarFieldContainer[str]
    items: int
    labels: int
    percent_agreement: Estimate
    cohen_kappa: Estimate
    fleiss_kappa: Estimate
    krippendorff_alpha: Estimate
    gwet_ac1: Estimate
    def __init__(self, scope: _Optional[_Union[AgreementScope, str]] = ..., name: _Optional[str] = ..., reviewers: _Optional[_Iterable[str]] = ..., items: _Optional[int] = ..., labels: _Optional[int] = ..., percent_agreement: _Optional[_Union[Estimate, _Mapping]] = ..., cohen_kappa: _Optional[_Union[Estimate, _Mapping]] = ..., fleiss_kappa: _Optional[_Union[Estimate, _Mapping]] = ..., krippendorff_alpha: _Optional[_Union[Estimate, _Mapping]] = ..., gwet_ac1: _Optional[_Union[Estimate, _Mapping]] = ...) -> None: ...

class Estimate(_message.Message):
    __slots__ = ("value", "ci_low", "ci_high")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    value: float
    ci_low: float
    ci_high: float
    def __init__(self, value: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ...) -> None: ...

class ExportAdjudicatedRequest(_message.Message):
    __slots__ = ("detector", "batch")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    detector: str
    batch: str
    def __init__(self, detector: _Optional[str] = ..., batch: _Optional[str] = ...) -> None: ...

class ExportAdjudicatedResponse(_message.Message):
    __slots__ = ("cases",)
    CASES_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[RegressionCase]
    def __init__(self, cases: _Optional[_Iterable[_Union[RegressionCase, _Mapping]]] = ...) -> None: ...

class RegressionCase(_message.Message):
    __slots__ = ("item_id", "question", "answer", "passages", "detector", "final_verdict", "reviewer_notes", "interaction_id", "batch", "criteria", "reason", "resolved_at", "interrupted")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    FINAL_VERDICT_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_NOTES_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    question: str
    answer: str
    passages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Passage]
    detector: str
    final_verdict: ReviewVerdict
    reviewer_notes: _containers.RepeatedScalarFieldContainer[str]
    interaction_id: str
    batch: str
    criteria: str
    reason: str
    resolved_at: _timestamp_pb2.Timestamp
    interrupted: bool
    def __init__(self, item_id: _Optional[str] = ..., question: _Optional[str] = ..., answer: _Optional[str] = ..., passages: _Optional[_Iterable[_Union[_common_pb2.Passage, _Mapping]]] = ..., detector: _Optional[str] = ..., final_verdict: _Optional[_Union[ReviewVerdict, str]] = ..., reviewer_notes: _Optional[_Iterable[str]] = ..., interaction_id: _Optional[str] = ..., batch: _Optional[str] = ..., criteria: _Optional[str] = ..., reason: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interrupted: _Optional[bool] = ...) -> None: ...

class SubmitForReviewRequest(_message.Message):
    __slots__ = ("samples", "labels_required")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    LABELS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[EvaluationSample]
    labels_required: int
    def __init__(self, samples: _Optional[_Iterable[_Union[EvaluationSample, _Mapping]]] = ..., labels_required: _Optional[int] = ...) -> None: ...

class EvaluationSample(_message.Message):
    __slots__ = ("question", "answer", "passages", "criteria", "batch", "sample_id")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    question: str
    answer: str
    passages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Passage]
    criteria: str
    batch: str
    sample_id: str
    def __init__(self, question: _Optional[str] = ..., answer: _Optional[str] = ..., passages: _Optional[_Iterable[_Union[_common_pb2.Passage, _Mapping]]] = ..., criteria: _Optional[str] = ..., batch: _Optional[str] = ..., sample_id: _Optional[str] = ...) -> None: ...

class SubmitForReviewResponse(_message.Message):
    __slots__ = ("item_ids",)
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, item_ids: _Optional[_Iterable[str]] = ...) -> None: ...

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from copilot.auth import Principal, current_principal
from copilot.errors import InvalidInput, PermissionDenied
from copilot.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from services.monitor import agreement, review
from services.monitor.detectors import Span
from services.monitor.flagstore import FlagStore
from services.monitor.review import ReviewQueue

MAX_LIMIT = 1000
MAX_RESAMPLES = 10_000

STATES = {
    review.State.OPEN: monitor_pb2.REVIEW_STATE_OPEN,
    review.State.IN_REVIEW: monitor_pb2.REVIEW_STATE_IN_REVIEW,
    review.State.RESOLVED: monitor_pb2.REVIEW_STATE_RESOLVED,
    review.State.ESCALATED: monitor_pb2.REVIEW_STATE_ESCALATED,
}
VERDICTS = {
    review.Verdict.TRUE_POSITIVE: monitor_pb2.REVIEW_VERDICT_TRUE_POSITIVE,
    review.Verdict.FALSE_POSITIVE: monitor_pb2.REVIEW_VERDICT_FALSE_POSITIVE,
    review.Verdict.ESCALATE: monitor_pb2.REVIEW_VERDICT_ESCALATE,
    review.Verdict.GOOD: monitor_pb2.REVIEW_VERDICT_GOOD,
    review.Verdict.BAD: monitor_pb2.REVIEW_VERDICT_BAD,
}
KINDS = {
    review.ItemKind.FLAG: monitor_pb2.REVIEW_ITEM_KIND_FLAG,
    review.ItemKind.EVALUATION: monitor_pb2.REVIEW_ITEM_KIND_EVALUATION,
}
SCOPES = {
    review.Scope.DETECTOR: monitor_pb2.AGREEMENT_SCOPE_DETECTOR,
    review.Scope.REVIEWER_PAIR: monitor_pb2.AGREEMENT_SCOPE_REVIEWER_PAIR,
    review.Scope.BATCH: monitor_pb2.AGREEMENT_SCOPE_BATCH,
}
_STATE_OF = {v: k for k, v in STATES.items()}
_VERDICT_OF = {v: k for k, v in VERDICTS.items()}


def _ts(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def _spans(spans: Iterable[Span]) -> list[monitor_pb2.EvidenceSpan]:
    return [monitor_pb2.EvidenceSpan(field=s.field, start=s.start, end=s.end) for s in spans]


def review_item_proto(item: review.ReviewItem) -> monitor_pb2.ReviewItem:
    message = monitor_pb2.ReviewItem(
        item_id=item.item_id,
        kind=KINDS[item.kind],
        state=STATES[item.state],
        final_verdict=VERDICTS[item.final_verdict] if item.final_verdict else None,
        detector=item.detector,
        severity=int(item.severity or 0),  # type: ignore[arg-type]
        reason=item.reason,
        evidence=list(item.evidence),
        interaction_id=item.interaction_id,
        batch=item.batch,
        criteria=item.criteria,
        question=item.question,
        answer=item.answer,
        passages=list(item.passages),
        assignees=list(item.assignees),
        labels_required=item.labels_required,
        labels=[
            monitor_pb2.ReviewLabel(
                reviewer=label.reviewer,
                verdict=VERDICTS[label.verdict],
                comment=label.comment,
                labeled_at=_ts(label.labeled_at),
                adjudication=label.adjudication,
            )
            for label in item.labels
        ],
        comments=[
            monitor_pb2.ReviewComment(author=c.author, text=c.text, created_at=_ts(c.created_at))
            for c in item.comments
        ],
        created_at=_ts(item.created_at),
        due_at=_ts(item.due_at),
        overdue=item.overdue,
        user_id=item.user_id,
        spans=_spans(item.spans),
        interrupted=item.interrupted,
    )
    if item.resolved_at is not None:
        message.resolved_at.CopyFrom(_ts(item.resolved_at))
    return message


def _estimate(value: agreement.Estimate | None) -> monitor_pb2.Estimate | None:
    if value is None:
        return None
    return monitor_pb2.Estimate(value=value.value, ci_low=value.ci_low, ci_high=value.ci_high)


class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    def __init__(
        self,
        store: FlagStore,
        reviewer_role: str,
        adjudicator_role: str = "copilot-reviewer",
        evaluator_role: str = "copilot-evaluator",
    ) -> None:
        self._store = store
        self._queue = ReviewQueue(store)
        self._role = reviewer_role
        self._adjudicator_role = adjudicator_role
        self._evaluator_role = evaluator_role

    def _reviewer(self) -> Principal:
        principal = current_principal()
        if not principal.has_role(self._role):
            raise PermissionDenied(f"reading monitor data needs the {self._role!r} role")
        return principal

    def _limit(self, limit: int) -> int:
        self._reviewer()
        if limit < 0 or limit > MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT} (0 for the default)")
        return limit or 50

    @staticmethod
    def _item_id(item_id: str) -> str:
        if not item_id:
            raise InvalidInput("item_id is required")
        return item_id

    def ListFlags(
        self, request: monitor_pb2.ListFlagsRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.ListFlagsResponse:  # noqa: N802,E501
        flags = self._store.list_flags(self._limit(request.limit), request.interaction_id or None)
        return monitor_pb2.ListFlagsResponse(
            flags=[
                monitor_pb2.Flag(
                    flag_id=f.flag_id,
                    interaction_id=f.interaction_id,
                    detector=f.detector,
                    severity=f"SEVERITY_{f.severity.name}",
                    reason=f.reason,
                    evidence=list(f.evidence),
                    created_at=_ts(f.created_at),
                    user_id=f.user_id,
                    question=f.question,
                    spans=_spans(f.spans),
                    interrupted=f.interrupted,
                )
                for f in flags
            ]
        )

    def ListInteractions(
        self, request: monitor_pb2.ListInteractionsRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.ListInteractionsResponse:  # noqa: N802,E501
        items = self._store.list_interactions(self._limit(request.limit))
        return monitor_pb2.ListInteractionsResponse(
            interactions=[
                monitor_pb2.InteractionSummary(
                    interaction_id=i.interaction_id,
                    user_id=i.user_id,
                    question=i.question,
                    answer=i.answer,
                    refused=i.refused,
                    flag_count=i.flag_count,
                    occurred_at=_ts(i.occurred_at),
                    interrupted=i.interrupted,
                )
                for i in items
            ]
        )

    def ListReviewItems(  # noqa: N802
        self, request: monitor_pb2.ListReviewItemsRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.ListReviewItemsResponse:
        limit = self._limit(request.limit)
        if request.state and request.state not in _STATE_OF:
            raise InvalidInput(f"unknown review state {request.state}")
        filters = review.ItemFilter(
            state=_STATE_OF.get(request.state),
            detector=request.detector,
            batch=request.batch,
            assignee=request.assignee,
            overdue_only=request.overdue_only,
            interrupted_only=request.interrupted_only,
        )
        items, total = self._queue.list_items(filters, limit)
        return monitor_pb2.ListReviewItemsResponse(items=[review_item_proto(i) for i in items], total=total)

    def GetReviewItem(  # noqa: N802
        self, request: monitor_pb2.GetReviewItemRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.GetReviewItemResponse:
        self._reviewer()
        item = self._queue.get(self._item_id(request.item_id))
        return monitor_pb2.GetReviewItemResponse(item=review_item_proto(item))

    def ClaimReviewItem(  # noqa: N802
        self, request: monitor_pb2.ClaimReviewItemRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.ClaimReviewItemResponse:
        principal = self._reviewer()
        item = self._queue.claim(self._item_id(request.item_id), principal.username)
        return monitor_pb2.ClaimReviewItemResponse(item=review_item_proto(item))

    def LabelReviewItem(  # noqa: N802
        self, request: monitor_pb2.LabelReviewItemRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.LabelReviewItemResponse:
        principal = self._reviewer()
        verdict = _VERDICT_OF.get(request.verdict)
        if verdict is None:
            raise InvalidInput("verdict is required (REVIEW_VERDICT_TRUE_POSITIVE, ..._FALSE_POSITIVE, ...)")
        item = self._queue.label(
            self._item_id(request.item_id),
            principal.username,
            verdict,
            request.comment,
            may_adjudicate=principal.has_role(self._adjudicator_role),
        )
        return monitor_pb2.LabelReviewItemResponse(item=review_item_proto(item))

    def CommentReviewItem(  # noqa: N802
        self, request: monitor_pb2.CommentReviewItemRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.CommentReviewItemResponse:
        principal = self._reviewer()
        item = self._queue.comment(self._item_id(request.item_id), principal.username, request.text)
        return monitor_pb2.CommentReviewItemResponse(item=review_item_proto(item))

    def GetAgreement(  # noqa: N802
        self, request: monitor_pb2.GetAgreementRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.GetAgreementResponse:
        self._reviewer()
        if not 0 <= request.resamples <= MAX_RESAMPLES:
            raise InvalidInput(f"resamples must be between 1 and {MAX_RESAMPLES} (0 for the default)")
        if not 0 <= request.confidence < 1:
            raise InvalidInput("confidence must be between 0 and 1, such as 0.95 (0 for the default)")
        entries = self._queue.agreement(
            request.detector,
            request.batch,
            request.resamples or agreement.DEFAULT_RESAMPLES,
            request.confidence or 0.95,
        )
        return monitor_pb2.GetAgreementResponse(
            agreements=[
                monitor_pb2.Agreement(
                    scope=SCOPES[e.scope],
                    name=e.name,
                    reviewers=list(e.reviewers),
                    items=e.figures.items,
                    labels=e.figures.labels,
                    percent_agreement=_estimate(e.figures.percent_agreement),
                    cohen_kappa=_estimate(e.figures.cohen_kappa),
                    fleiss_kappa=_estimate(e.figures.fleiss_kappa),
                    krippendorff_alpha=_estimate(e.figures.krippendorff_alpha),
                    gwet_ac1=_estimate(e.figures.gwet_ac1),
                )
                for e in entries
            ]
        )

    def ExportAdjudicated(  # noqa: N802
        self, request: monitor_pb2.ExportAdjudicatedRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.ExportAdjudicatedResponse:
        self._reviewer()
        return monitor_pb2.ExportAdjudicatedResponse(
            cases=[
                monitor_pb2.RegressionCase(
                    item_id=c.item_id,
                    question=c.question,
                    answer=c.answer,
                    passages=list(c.passages),
                    detector=c.detector,
                    final_verdict=VERDICTS[c.final_verdict],
                    reviewer_notes=list(c.reviewer_notes),
                    interaction_id=c.interaction_id,
                    batch=c.batch,
                    criteria=c.criteria,
                    reason=c.reason,
                    resolved_at=_ts(c.resolved_at),
                    interrupted=c.interrupted,
                )
                for c in self._queue.export(request.detector, request.batch)
            ]
        )

    def SubmitForReview(  # noqa: N802
        self, request: monitor_pb2.SubmitForReviewRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.SubmitForReviewResponse:
        principal = current_principal()
        if not (principal.has_role(self._role) or principal.has_role(self._evaluator_role)):
            raise PermissionDenied(
                f"submitting samples needs the {self._role!r} or {self._evaluator_role!r} role"
            )
        samples = [
            review.EvaluationSample(
                question=s.question,
                answer=s.answer,
                passages=list(s.passages),
                criteria=s.criteria,
                batch=s.batch,
                sample_id=s.sample_id,
            )
            for s in request.samples
        ]
        ids = self._queue.submit(samples, request.labels_required)
        return monitor_pb2.SubmitForReviewResponse(item_ids=ids)

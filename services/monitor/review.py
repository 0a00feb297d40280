"""The human review queue: flags and evaluation samples as items that reviewers claim, label and comment on.

An item needs ``labels_required`` labels from different reviewers. When they all agree it resolves with
that verdict; when they disagree, or anyone escalates, it is escalated and waits for an adjudicator, whose
decision resolves it. Each item has a due time from its severity's SLA. Resolved items export as
regression cases, and the labels feed the agreement figures (adjudications do not: they are not
independent ratings).
"""

from __future__ import annotations

import enum
import itertools
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from google.protobuf.json_format import MessageToDict, ParseDict

from copilot.common.v1 import common_pb2
from copilot.errors import InvalidInput, NotFound, PermissionDenied
from services.monitor import agreement
from services.monitor.detectors import Severity, Span
from services.monitor.schema import (
    from_us,
    insert_ignoring_duplicates,
    insert_many_ignoring_duplicates,
    now_us,
    review_assignments,
    review_comments,
    review_cursors,
    review_items,
    review_labels,
    without_nul,
)

if TYPE_CHECKING:
    from services.monitor.flagstore import FlagStore

EVALUATION_DETECTOR = "evaluation"
MAX_SAMPLES_PER_SUBMIT = 1000
MAX_COMMENT_CHARS = 10_000
_EVALUATION_NAMESPACE = uuid.UUID("2b8f5a4e-8d1c-4a57-9e0b-3f6c1d2e7a90")


class ItemKind(enum.StrEnum):
    FLAG = "flag"
    EVALUATION = "evaluation"


class State(enum.StrEnum):
    OPEN = "open"
    IN_REVIEW = "in_review"
    RESOLVED = "resolved"
    ESCALATED = "escalated"


class Verdict(enum.StrEnum):
    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"
    ESCALATE = "escalate"
    GOOD = "good"
    BAD = "bad"


VERDICTS = {
    ItemKind.FLAG: (Verdict.TRUE_POSITIVE, Verdict.FALSE_POSITIVE, Verdict.ESCALATE),
    ItemKind.EVALUATION: (Verdict.GOOD, Verdict.BAD, Verdict.ESCALATE),
}


@dataclass(frozen=True)
class ReviewPolicy:
    """How items are assigned and when they are due; built from ``ReviewSettings`` at start-up."""

    labels_required: int = 2
    # Round robin over these usernames; empty leaves items unassigned for anyone to claim.
    reviewers: tuple[str, ...] = ()
    # Detector name ("evaluation" for evaluation tasks) to its own reviewer pool.
    reviewers_by_detector: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Tenant to its own reviewer pool; it comes first, so a tenant's flags are assigned to its reviewers
    # whichever detector raised them.
    reviewers_by_tenant: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sla: Mapping[Severity, timedelta] = field(
        default_factory=lambda: {
            Severity.HIGH: timedelta(hours=4),
            Severity.MEDIUM: timedelta(hours=24),
            Severity.LOW: timedelta(hours=72),
        }
    )
    evaluation_sla: timedelta = timedelta(hours=72)
    # Flags below this severity are stored but not queued.
    min_severity: Severity = Severity.LOW

    def __post_init__(self) -> None:
        if self.labels_required < 1:
            raise ValueError(f"labels_required must be at least 1, got {self.labels_required}")


@dataclass(frozen=True)
class Label:
    reviewer: str
    verdict: Verdict
    comment: str
    labeled_at: datetime
    adjudication: bool


@dataclass(frozen=True)
class Comment:
    author: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class ReviewItem:
    item_id: str
    kind: ItemKind
    state: State
    final_verdict: Verdict | None
    detector: str
    severity: Severity | None
    reason: str
    evidence: tuple[str, ...]
    interaction_id: str
    user_id: str
    batch: str
    criteria: str
    question: str
    answer: str
    passages: tuple[common_pb2.Passage, ...]
    # Where the flag's evidence sits in the question, answer and passages.
    spans: tuple[Span, ...]
    # The caller cancelled mid-stream: the answer is cut off where the stream stopped.
    interrupted: bool
    labels_required: int
    assignees: tuple[str, ...]
    labels: tuple[Label, ...]
    comments: tuple[Comment, ...]
    created_at: datetime
    due_at: datetime
    resolved_at: datetime | None
    overdue: bool


@dataclass(frozen=True)
class NewItem:
    """What a new item is made of; ``open_items`` adds its state, due time and assignees."""

    item_id: str
    kind: ItemKind
    detector: str
    severity: Severity | None
    question: str
    answer: str
    passages: Sequence[common_pb2.Passage]
    reason: str = ""
    evidence: Sequence[str] = ()
    spans: Sequence[Span] = ()
    interaction_id: str | None = None
    user_id: str = ""
    # Tenant of the interaction, for assignment by tenant; empty for evaluation tasks.
    tenant: str = ""
    batch: str = ""
    criteria: str = ""
    labels_required: int | None = None
    interrupted: bool = False


@dataclass(frozen=True)
class EvaluationSample:
    question: str
    answer: str
    passages: Sequence[common_pb2.Passage]
    criteria: str
    batch: str
    sample_id: str = ""


@dataclass(frozen=True)
class ItemFilter:
    state: State | None = None
    detector: str = ""
    batch: str = ""
    assignee: str = ""
    overdue_only: bool = False
    interrupted_only: bool = False


@dataclass(frozen=True)
class RegressionCase:
    item_id: str
    question: str
    answer: str
    passages: tuple[common_pb2.Passage, ...]
    detector: str
    final_verdict: Verdict
    reviewer_notes: tuple[str, ...]
    interaction_id: str
    batch: str
    criteria: str
    reason: str
    resolved_at: datetime
    # The caller cut the answer off mid-stream.
    interrupted: bool

    def to_json(self) -> dict[str, Any]:
        """One JSONL line of the regression suite."""
        return {
            "item_id": self.item_id,
            "question": self.question,
            "answer": self.answer,
            "passages": [_passage_json(p) for p in self.passages],
            "detector": self.detector,
            "final_verdict": self.final_verdict.value,
            "reviewer_notes": list(self.reviewer_notes),
            "interaction_id": self.interaction_id,
            "batch": self.batch,
            "criteria": self.criteria,
            "reason": self.reason,
            "resolved_at": self.resolved_at.isoformat(),
            "interrupted": self.interrupted,
        }


class Scope(enum.StrEnum):
    DETECTOR = "detector"
    REVIEWER_PAIR = "reviewer_pair"
    BATCH = "batch"


@dataclass(frozen=True)
class AgreementEntry:
    scope: Scope
    name: str
    reviewers: tuple[str, ...]
    figures: agreement.AgreementFigures


def _passage_json(passage: common_pb2.Passage) -> dict[str, Any]:
    return MessageToDict(passage, preserving_proto_field_name=True)


def _passages_from_json(text: str) -> tuple[common_pb2.Passage, ...]:
    return tuple(ParseDict(p, common_pb2.Passage()) for p in json.loads(text))


# --- creating items (inside the flag store's transactions) --------------------------------------------------


def _due(policy: ReviewPolicy, severity: Severity | None) -> timedelta:
    return policy.evaluation_sla if severity is None else policy.sla[severity]


def _pool(policy: ReviewPolicy, item: NewItem) -> tuple[str, tuple[str, ...]]:
    """The name of the item's reviewer pool (its round-robin cursor) and its reviewers: its tenant's, else
    its detector's, else the shared list. Tenant pools are named "tenant:<name>" so that a tenant named like
    a detector does not share that detector's cursor."""
    if item.tenant and item.tenant in policy.reviewers_by_tenant:
        return f"tenant:{item.tenant}", policy.reviewers_by_tenant[item.tenant]
    if item.detector in policy.reviewers_by_detector:
        return item.detector, policy.reviewers_by_detector[item.detector]
    return "*", policy.reviewers


def _assign_round_robin(
    conn: sa.Connection, policy: ReviewPolicy, items: Sequence[tuple[NewItem, int]], at_us: int
) -> None:
    """Assigns each (item, labels required) the next reviewers of its pool (``_pool``) in round-robin order,
    continuing where the last item left off (the cursor is stored, so restarts and several monitor replicas
    share one rotation)."""
    by_pool: dict[str, tuple[tuple[str, ...], list[tuple[NewItem, int]]]] = {}
    for item, required in items:
        pool_name, pool = _pool(policy, item)
        if pool:
            by_pool.setdefault(pool_name, (pool, []))[1].append((item, required))
    assignments = []
    # Cursor rows are locked in name order, so two writers never wait on each other's.
    for pool_name in sorted(by_pool):
        pool, pool_items = by_pool[pool_name]
        insert_ignoring_duplicates(conn, review_cursors, "pool", {"pool": pool_name, "position": 0})
        position = conn.execute(
            sa.select(review_cursors.c.position).where(review_cursors.c.pool == pool_name).with_for_update()
        ).scalar_one()
        for item, required in pool_items:
            chosen = [pool[(position + i) % len(pool)] for i in range(min(required, len(pool)))]
            position += len(chosen)
            assignments += [{"item_id": item.item_id, "reviewer": r, "assigned_at_us": at_us} for r in chosen]
        conn.execute(
            review_cursors.update().where(review_cursors.c.pool == pool_name).values(position=position)
        )
    if assignments:
        conn.execute(review_assignments.insert(), assignments)


def open_items(conn: sa.Connection, items: Iterable[NewItem], policy: ReviewPolicy, at_us: int) -> list[str]:
    """Queues the items that are not queued yet and assigns them; returns the ids of the new ones. One
    statement for all of them: the consumer opens the items of a whole Kafka batch at once."""
    wanted: dict[str, tuple[NewItem, int]] = {}
    rows = []
    # The flags of one interaction share its passages; each list is converted once. JSON would keep a NUL
    # as the escape \u0000, which reads back as NUL, so it goes before.
    passages_json: dict[int, str] = {}
    for item in items:
        if item.severity is not None and item.severity < policy.min_severity:
            continue
        if item.item_id in wanted:
            continue
        required = item.labels_required or policy.labels_required
        wanted[item.item_id] = (item, required)
        if id(item.passages) not in passages_json:
            passages_json[id(item.passages)] = json.dumps(
                without_nul([_passage_json(p) for p in item.passages]), ensure_ascii=False
            )
        rows.append(
            {
                "item_id": item.item_id,
                "kind": item.kind.value,
                "state": State.OPEN.value,
                "final_verdict": None,
                "detector": item.detector,
                "severity": int(item.severity or 0),
                "reason": item.reason,
                "evidence": json.dumps(without_nul(list(item.evidence)), ensure_ascii=False),
                "interaction_id": item.interaction_id,
                "user_id": item.user_id,
                "batch": item.batch,
                "criteria": item.criteria,
                "question": item.question,
                "answer": item.answer,
                "passages": passages_json[id(item.passages)],
                "spans": [span.to_json() for span in item.spans],
                "interrupted": item.interrupted,
                "labels_required": required,
                "created_at_us": at_us,
                "due_at_us": at_us + int(_due(policy, item.severity) / timedelta(microseconds=1)),
                "resolved_at_us": None,
            }
        )
    inserted = insert_many_ignoring_duplicates(conn, review_items, "item_id", rows)
    created = [entry for item_id, entry in wanted.items() if item_id in inserted]
    _assign_round_robin(conn, policy, created, at_us)
    return [item.item_id for item, _ in created]


# --- the queue ----------------------------------------------------------------------------------------------


def _decide(labels: Sequence[Label], required: int) -> tuple[State, Verdict | None]:
    """State after a reviewer's label: escalated on any escalation or disagreement, resolved once enough
    reviewers agree, in review before that."""
    verdicts = {label.verdict for label in labels}
    if Verdict.ESCALATE in verdicts:
        return State.ESCALATED, None
    if len(labels) < required:
        return State.IN_REVIEW, None
    if len(verdicts) > 1:
        return State.ESCALATED, None
    return State.RESOLVED, next(iter(verdicts))


class ReviewQueue:
    """Review operations on the flag store's database. Permission to review is checked by the caller (the
    gRPC servicer or the web page); adjudication rights are passed in because they depend on the caller."""

    def __init__(self, store: FlagStore) -> None:
        self._store = store

    @property
    def policy(self) -> ReviewPolicy:
        return self._store.review_policy

    # reading

    def list_items(self, filters: ItemFilter, limit: int = 50) -> tuple[list[ReviewItem], int]:
        """Items matching the filters, due soonest first, without labels and comments; and how many match."""
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, got {limit}")
        now = now_us()
        conditions = []
        if filters.state is not None:
            conditions.append(review_items.c.state == filters.state.value)
        if filters.detector:
            conditions.append(review_items.c.detector == filters.detector)
        if filters.batch:
            conditions.append(review_items.c.batch == filters.batch)
        if filters.assignee:
            conditions.append(
                review_items.c.item_id.in_(
                    sa.select(review_assignments.c.item_id).where(
                        review_assignments.c.reviewer == filters.assignee
                    )
                )
            )
        if filters.overdue_only:
            conditions.append(review_items.c.state != State.RESOLVED.value)
            conditions.append(review_items.c.due_at_us < now)
        if filters.interrupted_only:
            conditions.append(review_items.c.interrupted)
        where = sa.and_(sa.true(), *conditions)
        with self._store.reading() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(review_items).where(where)
            ).scalar_one()
            rows = conn.execute(
                sa.select(review_items)
                .where(where)
                .order_by(review_items.c.due_at_us, review_items.c.seq)
                .limit(limit)
            ).all()
            assignees = self._assignees(conn, [row.item_id for row in rows])
        items = [self._item(row, assignees.get(row.item_id, ()), (), (), now) for row in rows]
        return items, int(total)

    def get(self, item_id: str) -> ReviewItem:
        with self._store.reading() as conn:
            return self._load(conn, item_id)

    def open_count(self) -> int:
        """Items not yet resolved: the queue's size."""
        with self._store.reading() as conn:
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(review_items)
                .where(review_items.c.state != State.RESOLVED.value)
            ).scalar_one()
        return int(count)

    def labels_version(self) -> tuple[int, int]:
        """Changes whenever a label is added or replaced, so agreement figures can be cached until then."""
        with self._store.reading() as conn:
            count, newest = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.max(review_labels.c.labeled_at_us), 0))
            ).one()
        return int(count), int(newest)

    # changing

    def claim(self, item_id: str, reviewer: str) -> ReviewItem:
        with self._store.writing() as conn:
            row = self._row(conn, item_id)
            if row.state in (State.RESOLVED, State.ESCALATED):
                raise InvalidInput(f"review item {item_id} is {State(row.state).value.replace('_', ' ')}")
            self._assign(conn, item_id, reviewer)
            if row.state == State.OPEN:
                self._set_state(conn, item_id, State.IN_REVIEW, None)
            return self._load(conn, item_id)

    def label(
        self, item_id: str, reviewer: str, verdict: Verdict, comment: str, may_adjudicate: bool
    ) -> ReviewItem:
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidInput(f"the comment is longer than {MAX_COMMENT_CHARS} characters")
        with self._store.writing() as conn:
            row = self._row(conn, item_id)
            kind = ItemKind(row.kind)
            if verdict not in VERDICTS[kind]:
                allowed = ", ".join(v.value for v in VERDICTS[kind])
                raise InvalidInput(f"{kind.value} items take one of: {allowed}; got {verdict.value}")
            state = State(row.state)
            if state == State.RESOLVED:
                raise InvalidInput(f"review item {item_id} is already resolved")
            now = now_us()
            if state == State.ESCALATED:
                if not may_adjudicate:
                    raise PermissionDenied("escalated items are decided by an adjudicator")
                if verdict == Verdict.ESCALATE:
                    raise InvalidInput("the item is already escalated; decide it with a verdict")
                self._put_label(conn, item_id, reviewer, verdict, comment, True, now)
                self._set_state(conn, item_id, State.RESOLVED, verdict, now)
                return self._load(conn, item_id)
            self._assign(conn, item_id, reviewer)
            self._put_label(conn, item_id, reviewer, verdict, comment, False, now)
            labels = [label for label in self._labels(conn, item_id) if not label.adjudication]
            new_state, final = _decide(labels, row.labels_required)
            self._set_state(conn, item_id, new_state, final, now if new_state == State.RESOLVED else None)
            return self._load(conn, item_id)

    def comment(self, item_id: str, author: str, text: str) -> ReviewItem:
        if not text.strip():
            raise InvalidInput("the comment is empty")
        if len(text) > MAX_COMMENT_CHARS:
            raise InvalidInput(f"the comment is longer than {MAX_COMMENT_CHARS} characters")
        with self._store.writing() as conn:
            self._row(conn, item_id)
            conn.execute(
                review_comments.insert().values(
                    item_id=item_id, author=author, text=text, created_at_us=now_us()
                )
            )
            return self._load(conn, item_id)

    def submit(self, samples: Sequence[EvaluationSample], labels_required: int = 0) -> list[str]:
        """Queues evaluation samples; a sample with a ``sample_id`` already queued in its batch returns the
        existing item, so an evaluation run may retry a submission."""
        if not samples:
            raise InvalidInput("no samples to submit")
        if len(samples) > MAX_SAMPLES_PER_SUBMIT:
            raise InvalidInput(f"at most {MAX_SAMPLES_PER_SUBMIT} samples a call, got {len(samples)}")
        if labels_required < 0:
            raise InvalidInput(f"labels_required must not be negative, got {labels_required}")
        for number, sample in enumerate(samples, 1):
            if not sample.question.strip() or not sample.answer.strip():
                raise InvalidInput(f"sample {number} needs a question and an answer")
        ids = [
            str(uuid.uuid5(_EVALUATION_NAMESPACE, f"{s.batch}\x1f{s.sample_id}"))
            if s.sample_id
            else str(uuid.uuid4())
            for s in samples
        ]
        new = [
            NewItem(
                item_id=item_id,
                kind=ItemKind.EVALUATION,
                detector=EVALUATION_DETECTOR,
                severity=None,
                question=s.question,
                answer=s.answer,
                passages=s.passages,
                batch=s.batch,
                criteria=s.criteria,
                labels_required=labels_required or None,
            )
            for item_id, s in zip(ids, samples, strict=True)
        ]
        with self._store.writing() as conn:
            open_items(conn, new, self.policy, now_us())
        return ids

    # exporting and measuring

    def export(self, detector: str = "", batch: str = "") -> list[RegressionCase]:
        """Resolved items, oldest resolution first, with every label comment and comment as a note."""
        conditions = [review_items.c.state == State.RESOLVED.value]
        if detector:
            conditions.append(review_items.c.detector == detector)
        if batch:
            conditions.append(review_items.c.batch == batch)
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(review_items)
                .where(*conditions)
                .order_by(review_items.c.resolved_at_us, review_items.c.seq)
            ).all()
            ids = [row.item_id for row in rows]
            labels = self._labels_of(conn, ids)
            comments = self._comments_of(conn, ids)
        cases = []
        for row in rows:
            notes = sorted(
                [(label.labeled_at, f"{label.reviewer}: {label.comment}") for label in labels[row.item_id]]
                + [(c.created_at, f"{c.author}: {c.text}") for c in comments[row.item_id]]
            )
            cases.append(
                RegressionCase(
                    item_id=row.item_id,
                    question=row.question,
                    answer=row.answer,
                    passages=_passages_from_json(row.passages),
                    detector=row.detector,
                    final_verdict=Verdict(row.final_verdict),
                    reviewer_notes=tuple(text for _, text in notes if not text.endswith(": ")),
                    interaction_id=row.interaction_id or "",
                    batch=row.batch,
                    criteria=row.criteria,
                    reason=row.reason,
                    resolved_at=from_us(row.resolved_at_us),
                    interrupted=bool(row.interrupted),
                )
            )
        return cases

    def agreement(
        self,
        detector: str = "",
        batch: str = "",
        resamples: int = agreement.DEFAULT_RESAMPLES,
        confidence: float = 0.95,
    ) -> list[AgreementEntry]:
        """Agreement per detector (flags), per reviewer pair and per evaluation batch, over reviewers' own
        labels (not adjudications) of the items matching the filters."""
        conditions = [sa.not_(review_labels.c.adjudication)]
        if detector:
            conditions.append(review_items.c.detector == detector)
        if batch:
            conditions.append(review_items.c.batch == batch)
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(
                    review_items.c.item_id,
                    review_items.c.kind,
                    review_items.c.detector,
                    review_items.c.batch,
                    review_labels.c.reviewer,
                    review_labels.c.verdict,
                )
                .join(review_labels, review_labels.c.item_id == review_items.c.item_id)
                .where(*conditions)
                .order_by(review_items.c.seq, review_labels.c.seq)
            ).all()
        ratings: dict[str, dict[str, str]] = defaultdict(dict)
        by_detector: dict[str, list[str]] = defaultdict(list)
        by_batch: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            if row.item_id not in ratings:
                if row.kind == ItemKind.FLAG:
                    by_detector[row.detector].append(row.item_id)
                elif row.batch:
                    by_batch[row.batch].append(row.item_id)
            ratings[row.item_id][row.reviewer] = row.verdict

        def entry(
            scope: Scope, name: str, ids: Sequence[str], pair: tuple[str, str] | None = None
        ) -> AgreementEntry:
            units = [ratings[i] if pair is None else {r: ratings[i][r] for r in pair} for i in ids]
            reviewers = pair or tuple(sorted({r for unit in units for r in unit}))
            return AgreementEntry(
                scope, name, reviewers, agreement.figures(units, resamples, confidence, pair=pair)
            )

        entries = [entry(Scope.DETECTOR, name, ids) for name, ids in sorted(by_detector.items())]
        reviewers = sorted({r for unit in ratings.values() for r in unit})
        for pair in itertools.combinations(reviewers, 2):
            shared = [i for i, unit in ratings.items() if pair[0] in unit and pair[1] in unit]
            if shared:
                entries.append(entry(Scope.REVIEWER_PAIR, " & ".join(pair), shared, pair))
        entries.extend(entry(Scope.BATCH, name, ids) for name, ids in sorted(by_batch.items()))
        # A scope where no item has two labels yet has nothing to agree on.
        return [e for e in entries if e.figures.items > 0]

    # helpers

    def _row(self, conn: sa.Connection, item_id: str) -> sa.Row[Any]:
        row = conn.execute(sa.select(review_items).where(review_items.c.item_id == item_id)).first()
        if row is None:
            raise NotFound(f"no review item {item_id!r}")
        return row

    def _load(self, conn: sa.Connection, item_id: str) -> ReviewItem:
        row = self._row(conn, item_id)
        return self._item(
            row,
            self._assignees(conn, [item_id]).get(item_id, ()),
            self._labels(conn, item_id),
            self._comments_of(conn, [item_id])[item_id],
            now_us(),
        )

    @staticmethod
    def _item(
        row: sa.Row[Any],
        assignees: Sequence[str],
        labels: Sequence[Label],
        comments: Sequence[Comment],
        now: int,
    ) -> ReviewItem:
        state = State(row.state)
        return ReviewItem(
            item_id=row.item_id,
            kind=ItemKind(row.kind),
            state=state,
            final_verdict=Verdict(row.final_verdict) if row.final_verdict else None,
            detector=row.detector,
            severity=Severity(row.severity) if row.severity else None,
            reason=row.reason,
            evidence=tuple(json.loads(row.evidence)),
            interaction_id=row.interaction_id or "",
            user_id=row.user_id,
            batch=row.batch,
            criteria=row.criteria,
            question=row.question,
            answer=row.answer,
            passages=_passages_from_json(row.passages),
            spans=tuple(Span.from_json(span) for span in row.spans or ()),
            interrupted=bool(row.interrupted),
            labels_required=row.labels_required,
            assignees=tuple(assignees),
            labels=tuple(labels),
            comments=tuple(comments),
            created_at=from_us(row.created_at_us),
            due_at=from_us(row.due_at_us),
            resolved_at=from_us(row.resolved_at_us) if row.resolved_at_us is not None else None,
            overdue=state != State.RESOLVED and row.due_at_us < now,
        )

    @staticmethod
    def _assignees(conn: sa.Connection, ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        found: dict[str, list[str]] = defaultdict(list)
        for chunk in _chunks(ids):
            for row in conn.execute(
                sa.select(review_assignments.c.item_id, review_assignments.c.reviewer)
                .where(review_assignments.c.item_id.in_(chunk))
                .order_by(review_assignments.c.assigned_at_us, review_assignments.c.reviewer)
            ):
                found[row.item_id].append(row.reviewer)
        return {item_id: tuple(names) for item_id, names in found.items()}

    def _labels(self, conn: sa.Connection, item_id: str) -> list[Label]:
        return self._labels_of(conn, [item_id])[item_id]

    @staticmethod
    def _labels_of(conn: sa.Connection, ids: Sequence[str]) -> dict[str, list[Label]]:
        found: dict[str, list[Label]] = defaultdict(list)
        for chunk in _chunks(ids):
            for row in conn.execute(
                sa.select(review_labels)
                .where(review_labels.c.item_id.in_(chunk))
                .order_by(review_labels.c.labeled_at_us, review_labels.c.seq)
            ):
                found[row.item_id].append(
                    Label(
                        reviewer=row.reviewer,
                        verdict=Verdict(row.verdict),
                        comment=row.comment,
                        labeled_at=from_us(row.labeled_at_us),
                        adjudication=bool(row.adjudication),
                    )
                )
        return found

    @staticmethod
    def _comments_of(conn: sa.Connection, ids: Sequence[str]) -> dict[str, list[Comment]]:
        found: dict[str, list[Comment]] = defaultdict(list)
        for chunk in _chunks(ids):
            for row in conn.execute(
                sa.select(review_comments)
                .where(review_comments.c.item_id.in_(chunk))
                .order_by(review_comments.c.created_at_us, review_comments.c.seq)
            ):
                found[row.item_id].append(Comment(row.author, row.text, from_us(row.created_at_us)))
        return found

    @staticmethod
    def _assign(conn: sa.Connection, item_id: str, reviewer: str) -> None:
        assigned = conn.execute(
            sa.select(review_assignments.c.reviewer).where(
                review_assignments.c.item_id == item_id, review_assignments.c.reviewer == reviewer
            )
        ).first()
        if assigned is None:
            conn.execute(
                review_assignments.insert().values(
                    item_id=item_id, reviewer=reviewer, assigned_at_us=now_us()
                )
            )

    @staticmethod
    def _put_label(
        conn: sa.Connection,
        item_id: str,
        reviewer: str,
        verdict: Verdict,
        comment: str,
        adjudication: bool,
        at_us: int,
    ) -> None:
        """A reviewer's new label replaces their earlier one on the same item."""
        mine = sa.and_(
            review_labels.c.item_id == item_id,
            review_labels.c.reviewer == reviewer,
            review_labels.c.adjudication == adjudication,
        )
        updated = conn.execute(
            review_labels.update()
            .where(mine)
            .values(verdict=verdict.value, comment=comment, labeled_at_us=at_us)
        ).rowcount
        if not updated:
            conn.execute(
                review_labels.insert().values(
                    item_id=item_id,
                    reviewer=reviewer,
                    verdict=verdict.value,
                    comment=comment,
                    adjudication=adjudication,
                    labeled_at_us=at_us,
                )
            )

    @staticmethod
    def _set_state(
        conn: sa.Connection,
        item_id: str,
        state: State,
        verdict: Verdict | None,
        resolved_at_us: int | None = None,
    ) -> None:
        conn.execute(
            review_items.update()
            .where(review_items.c.item_id == item_id)
            .values(
                state=state.value,
                final_verdict=verdict.value if verdict else None,
                resolved_at_us=resolved_at_us,
            )
        )


def _chunks(ids: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """Keeps IN lists under SQLite's bound-parameter limit."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]

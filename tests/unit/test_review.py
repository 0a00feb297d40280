from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from copilot.common.v1 import common_pb2
from copilot.errors import InvalidInput, NotFound, PermissionDenied
from copilot.events.v1 import events_pb2
from services.monitor.detectors import Finding, Severity
from services.monitor.flagstore import FlagStore
from services.monitor.review import (
    EvaluationSample,
    ItemFilter,
    ItemKind,
    ReviewPolicy,
    ReviewQueue,
    Scope,
    State,
    Verdict,
)
from services.monitor.settings import ReviewSettings

PII = Finding("pii", Severity.HIGH, "answer contains an IBAN", ("GB** **** 54 32",))
REFUSAL = Finding("refusal", Severity.LOW, "no readable source covered the question", ())
LATENCY = Finding("latency", Severity.MEDIUM, "slow", ("61000 ms",))
PASSAGE = common_pb2.Passage(chunk_id="c1", title="Travel policy", text="The travel budget is 412,000 USD.")


def event(event_id: str, tenant: str = "") -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(
        event_id=event_id,
        user_id="u1",
        tenant=tenant,
        question=f"question of {event_id}",
        answer=f"answer of {event_id}",
        passages=[PASSAGE],
    )


def make_queue(policy: ReviewPolicy) -> Iterator[tuple[FlagStore, ReviewQueue]]:
    store = FlagStore(":memory:", review_policy=policy)
    yield store, ReviewQueue(store)
    store.close()


@pytest.fixture
def queue() -> Iterator[ReviewQueue]:
    for _, review_queue in make_queue(ReviewPolicy(labels_required=2)):
        yield review_queue


@pytest.fixture
def store_and_queue() -> Iterator[tuple[FlagStore, ReviewQueue]]:
    yield from make_queue(ReviewPolicy(labels_required=2))


def only_item(queue: ReviewQueue, detector: str) -> str:
    items, _ = queue.list_items(ItemFilter(detector=detector))
    assert len(items) == 1
    return items[0].item_id


def test_every_flag_becomes_an_open_item_due_by_its_severity(
    store_and_queue: tuple[FlagStore, ReviewQueue],
) -> None:
    store, queue = store_and_queue
    store.record(event("e1"), [PII, REFUSAL])
    items, total = queue.list_items(ItemFilter())
    assert total == 2
    by_detector = {i.detector: i for i in items}
    pii = by_detector["pii"]
    assert pii.item_id in {f.flag_id for f in store.list_flags() if f.detector == "pii"}
    assert (pii.kind, pii.state, pii.severity, pii.labels_required) == (
        ItemKind.FLAG,
        State.OPEN,
        Severity.HIGH,
        2,
    )
    assert (pii.question, pii.answer, pii.interaction_id) == ("question of e1", "answer of e1", "e1")
    assert list(pii.passages) == [PASSAGE]
    assert pii.evidence == PII.evidence
    assert pii.due_at - pii.created_at == timedelta(hours=4)
    assert by_detector["refusal"].due_at - by_detector["refusal"].created_at == timedelta(hours=72)
    # Due soonest first.
    assert [i.detector for i in items] == ["pii", "refusal"]
    assert not pii.overdue


def test_round_robin_assignment_continues_across_items_and_restarts(tmp_path: object) -> None:
    policy = ReviewPolicy(labels_required=2, reviewers=("ann", "bob", "cy"))
    path = f"{tmp_path}/monitor.db"
    store = FlagStore(path, review_policy=policy)
    store.record(event("e1"), [PII])
    store.record(event("e2"), [PII])
    store.close()
    store = FlagStore(path, review_policy=policy)
    store.record(event("e3"), [PII])
    queue = ReviewQueue(store)
    assignees = [queue.get(f.flag_id).assignees for f in reversed(store.list_flags())]
    store.close()
    assert assignees == [("ann", "bob"), ("ann", "cy"), ("bob", "cy")]


def test_detectors_can_have_their_own_reviewers_and_low_severity_can_stay_out() -> None:
    policy = ReviewSettings(
        reviewers=["ann"], reviewers_by_detector={"pii": ["priv1", "priv2"]}, min_severity="medium"
    ).policy()
    for store, queue in make_queue(policy):
        store.record(event("e1"), [PII, LATENCY, REFUSAL])
        items, _ = queue.list_items(ItemFilter())
        assert {i.detector: i.assignees for i in items} == {"pii": ("priv1", "priv2"), "latency": ("ann",)}
        assert len(queue.list_items(ItemFilter(assignee="priv2"))[0]) == 1


def test_a_tenants_flags_go_to_its_own_reviewers_before_detector_pools(tmp_path: object) -> None:
    policy = ReviewSettings(
        reviewers=["ann"],
        reviewers_by_detector={"pii": ["priv1"]},
        reviewers_by_tenant={"globex": ["gx1", "gx2", "gx3"], "pii": ["tenant-named-pii"]},
        labels_per_item=2,
    ).policy()
    path = f"{tmp_path}/monitor.db"
    store = FlagStore(path, review_policy=policy)
    store.record(event("g1", tenant="globex"), [PII, LATENCY])
    store.record(event("a1", tenant="acme"), [PII, LATENCY])
    store.record(event("n1"), [LATENCY])
    store.close()
    # The rotation of the tenant's pool survives a restart like any other.
    store = FlagStore(path, review_policy=policy)
    store.record(event("g2", tenant="globex"), [PII])
    # A tenant named like a detector has its own pool, not that detector's.
    store.record(event("p1", tenant="pii"), [LATENCY])
    queue = ReviewQueue(store)
    assigned = {
        (item.interaction_id, item.detector): item.assignees for item in queue.list_items(ItemFilter())[0]
    }
    store.close()
    assert assigned == {
        ("g1", "pii"): ("gx1", "gx2"),
        ("g1", "latency"): ("gx1", "gx3"),
        ("g2", "pii"): ("gx2", "gx3"),
        # Tenants without a pool of their own fall back to the detector's pool, then to the shared list.
        ("a1", "pii"): ("priv1",),
        ("a1", "latency"): ("ann",),
        ("n1", "latency"): ("ann",),
        ("p1", "latency"): ("tenant-named-pii",),
    }


def test_two_agreeing_labels_resolve_the_item(store_and_queue: tuple[FlagStore, ReviewQueue]) -> None:
    store, queue = store_and_queue
    store.record(event("e1"), [PII])
    item_id = only_item(queue, "pii")
    claimed = queue.claim(item_id, "ann")
    assert (claimed.state, claimed.assignees) == (State.IN_REVIEW, ("ann",))
    first = queue.label(item_id, "ann", Verdict.TRUE_POSITIVE, "a real IBAN", may_adjudicate=False)
    assert first.state == State.IN_REVIEW and first.final_verdict is None
    # A reviewer's second label replaces the first, it does not count twice.
    again = queue.label(item_id, "ann", Verdict.TRUE_POSITIVE, "a real IBAN, checked", may_adjudicate=False)
    assert again.state == State.IN_REVIEW and len(again.labels) == 1
    done = queue.label(item_id, "bob", Verdict.TRUE_POSITIVE, "", may_adjudicate=False)
    assert (done.state, done.final_verdict) == (State.RESOLVED, Verdict.TRUE_POSITIVE)
    assert done.resolved_at is not None and not done.overdue
    assert [label.reviewer for label in done.labels] == ["ann", "bob"]
    with pytest.raises(InvalidInput, match="already resolved"):
        queue.label(item_id, "cy", Verdict.FALSE_POSITIVE, "", may_adjudicate=True)


def test_disagreement_escalates_and_an_adjudicator_decides(
    store_and_queue: tuple[FlagStore, ReviewQueue],
) -> None:
    store, queue = store_and_queue
    store.record(event("e1"), [PII])
    item_id = only_item(queue, "pii")
    queue.label(item_id, "ann", Verdict.TRUE_POSITIVE, "", may_adjudicate=False)
    split = queue.label(item_id, "bob", Verdict.FALSE_POSITIVE, "test data", may_adjudicate=False)
    assert split.state == State.ESCALATED
    with pytest.raises(PermissionDenied):
        queue.label(item_id, "cy", Verdict.TRUE_POSITIVE, "", may_adjudicate=False)
    with pytest.raises(InvalidInput):
        queue.label(item_id, "lead", Verdict.ESCALATE, "", may_adjudicate=True)
    decided = queue.label(
        item_id, "lead", Verdict.FALSE_POSITIVE, "sample IBAN from docs", may_adjudicate=True
    )
    assert (decided.state, decided.final_verdict) == (State.RESOLVED, Verdict.FALSE_POSITIVE)
    assert [label.adjudication for label in decided.labels] == [False, False, True]


def test_escalate_verdict_escalates_at_once(queue: ReviewQueue) -> None:
    ids = queue.submit([EvaluationSample("q", "a", [], "cites its sources", "run-1")])
    escalated = queue.label(ids[0], "ann", Verdict.ESCALATE, "not sure", may_adjudicate=False)
    assert escalated.state == State.ESCALATED
    with pytest.raises(InvalidInput, match="escalated"):
        queue.claim(ids[0], "bob")


def test_verdicts_must_fit_the_kind(store_and_queue: tuple[FlagStore, ReviewQueue]) -> None:
    store, queue = store_and_queue
    store.record(event("e1"), [PII])
    with pytest.raises(InvalidInput, match="good"):
        queue.label(only_item(queue, "pii"), "ann", Verdict.GOOD, "", may_adjudicate=False)
    [sample] = queue.submit([EvaluationSample("q", "a", [], "", "run-1")])
    with pytest.raises(InvalidInput, match="true_positive"):
        queue.label(sample, "ann", Verdict.TRUE_POSITIVE, "", may_adjudicate=False)
    with pytest.raises(NotFound):
        queue.claim("no-such-item", "ann")


def test_comments_are_kept_in_order(queue: ReviewQueue) -> None:
    [item_id] = queue.submit([EvaluationSample("q", "a", [], "", "run-1")])
    queue.comment(item_id, "ann", "first")
    item = queue.comment(item_id, "bob", "<b>second</b>")
    assert [(c.author, c.text) for c in item.comments] == [("ann", "first"), ("bob", "<b>second</b>")]
    with pytest.raises(InvalidInput, match="empty"):
        queue.comment(item_id, "ann", "  ")


def test_overdue_items_are_marked_and_filterable() -> None:
    late = ReviewPolicy(sla={s: timedelta(hours=-1) for s in Severity}, evaluation_sla=timedelta(hours=1))
    for store, queue in make_queue(late):
        store.record(event("e1"), [PII])
        queue.submit([EvaluationSample("q", "a", [], "", "run-1")])
        overdue, total = queue.list_items(ItemFilter(overdue_only=True))
        assert total == 1 and overdue[0].detector == "pii" and overdue[0].overdue
        assert not queue.list_items(ItemFilter(detector="evaluation"))[0][0].overdue


def test_submitted_samples_are_evaluation_items_and_retries_are_idempotent(queue: ReviewQueue) -> None:
    samples = [
        EvaluationSample("q1", "a1", [PASSAGE], "grounded in the passage", "run-1", sample_id="s1"),
        EvaluationSample("q2", "a2", [], "polite", "run-1", sample_id="s2"),
    ]
    ids = queue.submit(samples, labels_required=1)
    assert queue.submit(samples, labels_required=1) == ids
    assert queue.list_items(ItemFilter(batch="run-1"))[1] == 2
    item = queue.get(ids[0])
    assert (item.kind, item.detector, item.batch, item.criteria) == (
        ItemKind.EVALUATION,
        "evaluation",
        "run-1",
        "grounded in the passage",
    )
    assert item.severity is None and item.labels_required == 1
    assert queue.label(ids[0], "ann", Verdict.GOOD, "", may_adjudicate=False).final_verdict == Verdict.GOOD
    unnamed = queue.submit([EvaluationSample("q", "a", [], "", "run-2")])
    assert unnamed != queue.submit([EvaluationSample("q", "a", [], "", "run-2")])
    with pytest.raises(InvalidInput):
        queue.submit([EvaluationSample("", "a", [], "", "run-1")])
    with pytest.raises(InvalidInput):
        queue.submit([])


def test_export_has_resolved_items_with_reviewer_notes(
    store_and_queue: tuple[FlagStore, ReviewQueue],
) -> None:
    store, queue = store_and_queue
    store.record(event("e1"), [PII])
    store.record(event("e2"), [REFUSAL])
    item_id = only_item(queue, "pii")
    queue.comment(item_id, "cy", "the account belongs to a customer")
    queue.label(item_id, "ann", Verdict.TRUE_POSITIVE, "real IBAN", may_adjudicate=False)
    queue.label(item_id, "bob", Verdict.TRUE_POSITIVE, "", may_adjudicate=False)
    [case] = queue.export()
    assert (case.item_id, case.detector, case.final_verdict, case.interaction_id) == (
        item_id,
        "pii",
        Verdict.TRUE_POSITIVE,
        "e1",
    )
    assert case.reviewer_notes == ("cy: the account belongs to a customer", "ann: real IBAN")
    line = case.to_json()
    assert line["question"] == "question of e1" and line["final_verdict"] == "true_positive"
    assert line["passages"][0]["text"] == PASSAGE.text
    assert queue.export(detector="refusal") == []


def test_agreement_per_detector_pair_and_batch() -> None:
    for store, queue in make_queue(ReviewPolicy(labels_required=3)):
        verdicts = [
            ("tp", "tp", "tp"),
            ("tp", "tp", "fp"),
            ("fp", "fp", "fp"),
            ("tp", "fp", "tp"),
            ("fp", "fp", "tp"),
            ("tp", "tp", "tp"),
        ]
        for n, row in enumerate(verdicts):
            store.record(event(f"e{n}"), [PII])
            [item], _ = queue.list_items(ItemFilter(state=State.OPEN))
            item_id = item.item_id
            for reviewer, short in zip(("ann", "bob", "cy"), row, strict=True):
                verdict = Verdict.TRUE_POSITIVE if short == "tp" else Verdict.FALSE_POSITIVE
                queue.label(item_id, reviewer, verdict, "", may_adjudicate=False)
        ids = queue.submit([EvaluationSample(f"q{i}", "a", [], "", "run-1") for i in range(3)])
        for item_id, (first, second) in zip(
            ids, [("good", "good"), ("bad", "bad"), ("good", "bad")], strict=True
        ):
            queue.label(item_id, "ann", Verdict(first), "", may_adjudicate=False)
            queue.label(item_id, "bob", Verdict(second), "", may_adjudicate=False)
        entries = queue.agreement(resamples=100)
        scopes = [(e.scope, e.name) for e in entries]
        assert scopes == [
            (Scope.DETECTOR, "pii"),
            (Scope.REVIEWER_PAIR, "ann & bob"),
            (Scope.REVIEWER_PAIR, "ann & cy"),
            (Scope.REVIEWER_PAIR, "bob & cy"),
            (Scope.BATCH, "run-1"),
        ]
        pii = entries[0].figures
        assert (pii.items, pii.labels, entries[0].reviewers) == (6, 18, ("ann", "bob", "cy"))
        # 3 unanimous items (agreement 1) and 3 split 2-1 items (1 of 3 pairs agree): (3 + 1) / 6.
        assert pii.percent_agreement is not None and pii.percent_agreement.value == pytest.approx(4 / 6)
        assert pii.cohen_kappa is None and pii.fleiss_kappa is not None
        ann_bob = entries[1].figures
        # ann and bob agree on 5 of the 6 flags and 2 of the 3 samples.
        assert ann_bob.items == 9 and ann_bob.cohen_kappa is not None
        assert ann_bob.percent_agreement is not None and ann_bob.percent_agreement.value == pytest.approx(
            7 / 9
        )
        batch = entries[-1].figures
        assert batch.items == 3 and batch.percent_agreement is not None
        assert batch.percent_agreement.value == pytest.approx(2 / 3)
        assert [e.name for e in queue.agreement(batch="run-1", resamples=50)] == ["ann & bob", "run-1"]

"""The review queue through a real gRPC server with real signed tokens: roles, the evaluation harness's
SubmitForReview, labelling by two reviewers, agreement and the regression export."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from copilot import cli
from copilot.auth import TokenVerifier
from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.events.v1 import events_pb2
from copilot.grpc_client import bearer, open_channel
from copilot.grpc_server import GrpcServer
from copilot.launcher import Component, Stack
from copilot.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from copilot.settings import AuthSettings
from services.monitor.detectors import Finding, Severity, Span
from services.monitor.flagstore import FlagStore
from services.monitor.review import EvaluationSample, ReviewQueue, Verdict
from services.monitor.service import MonitorServicer
from services.monitor.settings import MonitorSettings
from tests.conftest import SAMPLE_USERS


@pytest.fixture(scope="module")
def monitor(
    auth_settings: AuthSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, FlagStore]]:
    settings = MonitorSettings(port=0, auth=auth_settings)
    server = GrpcServer("monitor", settings, TokenVerifier(auth_settings))
    slot = server.add_service(
        monitor_pb2_grpc.add_MonitorServiceServicer_to_server, "copilot.monitor.v1.MonitorService"
    )
    server.start()
    store = FlagStore(tmp_path_factory.mktemp("monitor") / "monitor.sqlite", settings.review.policy())
    slot.fill(MonitorServicer(store, settings.reviewer_role, "copilot-review-lead", "copilot-evaluator"))
    server.set_serving(True)
    yield f"127.0.0.1:{server.port}", store
    server.stop(1)
    store.close()


def stub(target: str) -> monitor_pb2_grpc.MonitorServiceStub:
    return monitor_pb2_grpc.MonitorServiceStub(open_channel(target))


def reviewer(issuer: DevIssuer, name: str, *roles: str) -> list[tuple[str, str]]:
    token = issuer.mint(
        "ops",
        sub=f"sub-{name}",
        preferred_username=name,
        realm_access={"roles": ["copilot-reviewer", *roles]},
    )
    return bearer(token)


def test_review_rpcs_need_the_reviewer_role(monitor: tuple[str, FlagStore], issuer: DevIssuer) -> None:
    target, _ = monitor
    alice = bearer(issuer.mint("alice"))
    calls = [
        lambda: stub(target).ListReviewItems(monitor_pb2.ListReviewItemsRequest(), metadata=alice),
        lambda: stub(target).GetReviewItem(monitor_pb2.GetReviewItemRequest(item_id="x"), metadata=alice),
        lambda: stub(target).GetAgreement(monitor_pb2.GetAgreementRequest(), metadata=alice),
        lambda: stub(target).ExportAdjudicated(monitor_pb2.ExportAdjudicatedRequest(), metadata=alice),
        lambda: stub(target).SubmitForReview(
            monitor_pb2.SubmitForReviewRequest(
                samples=[monitor_pb2.EvaluationSample(question="q", answer="a")]
            ),
            metadata=alice,
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as caught:
        stub(target).ListReviewItems(monitor_pb2.ListReviewItemsRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_evaluation_run_submits_and_two_reviewers_label(
    monitor: tuple[str, FlagStore], issuer: DevIssuer
) -> None:
    target, _ = monitor
    evaluator = bearer(issuer.mint("alice", realm_access={"roles": ["copilot-evaluator"]}))
    passage = common_pb2.Passage(chunk_id="c1", title="Travel", text="The travel budget is 412,000 USD.")
    samples = [
        monitor_pb2.EvaluationSample(
            question=f"What is the budget? ({n})",
            answer="412,000 USD [1].",
            passages=[passage],
            criteria="grounded and cited",
            batch="eval-run-7",
            sample_id=f"s{n}",
        )
        for n in range(4)
    ]
    submitted = stub(target).SubmitForReview(
        monitor_pb2.SubmitForReviewRequest(samples=samples), metadata=evaluator
    )
    assert len(submitted.item_ids) == 4
    again = stub(target).SubmitForReview(
        monitor_pb2.SubmitForReviewRequest(samples=samples), metadata=evaluator
    )
    assert list(again.item_ids) == list(submitted.item_ids)

    ann, bob = reviewer(issuer, "ann"), reviewer(issuer, "bob")
    listed = stub(target).ListReviewItems(
        monitor_pb2.ListReviewItemsRequest(batch="eval-run-7", state=monitor_pb2.REVIEW_STATE_OPEN),
        metadata=ann,
    )
    assert listed.total == 4 and {i.kind for i in listed.items} == {monitor_pb2.REVIEW_ITEM_KIND_EVALUATION}
    first = listed.items[0]
    assert first.passages[0].text == passage.text and first.criteria == "grounded and cited"

    claimed = stub(target).ClaimReviewItem(
        monitor_pb2.ClaimReviewItemRequest(item_id=first.item_id), metadata=ann
    )
    assert claimed.item.state == monitor_pb2.REVIEW_STATE_IN_REVIEW and list(claimed.item.assignees) == [
        "ann"
    ]
    mine = stub(target).ListReviewItems(monitor_pb2.ListReviewItemsRequest(assignee="ann"), metadata=ann)
    assert [i.item_id for i in mine.items] == [first.item_id]

    verdicts = {"ann": ["GOOD", "GOOD", "BAD", "GOOD"], "bob": ["GOOD", "BAD", "BAD", "GOOD"]}
    for name, metadata in (("ann", ann), ("bob", bob)):
        for item_id, verdict in zip(submitted.item_ids, verdicts[name], strict=True):
            stub(target).LabelReviewItem(
                monitor_pb2.LabelReviewItemRequest(
                    item_id=item_id,
                    verdict=monitor_pb2.ReviewVerdict.Value(f"REVIEW_VERDICT_{verdict}"),
                    comment=f"{name} says {verdict.lower()}",
                ),
                metadata=metadata,
            )
    item = (
        stub(target)
        .GetReviewItem(monitor_pb2.GetReviewItemRequest(item_id=submitted.item_ids[0]), metadata=ann)
        .item
    )
    assert item.state == monitor_pb2.REVIEW_STATE_RESOLVED
    assert item.final_verdict == monitor_pb2.REVIEW_VERDICT_GOOD
    assert [(label.reviewer, label.comment) for label in item.labels] == [
        ("ann", "ann says good"),
        ("bob", "bob says good"),
    ]
    split = (
        stub(target)
        .GetReviewItem(monitor_pb2.GetReviewItemRequest(item_id=submitted.item_ids[1]), metadata=ann)
        .item
    )
    assert split.state == monitor_pb2.REVIEW_STATE_ESCALATED

    # Escalated items need the adjudicator role, which ann lacks and lead holds.
    decide = monitor_pb2.LabelReviewItemRequest(
        item_id=split.item_id, verdict=monitor_pb2.REVIEW_VERDICT_BAD, comment="fails the criteria"
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub(target).LabelReviewItem(decide, metadata=ann)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    lead = reviewer(issuer, "lead", "copilot-review-lead")
    decided = stub(target).LabelReviewItem(decide, metadata=lead).item
    assert decided.final_verdict == monitor_pb2.REVIEW_VERDICT_BAD and decided.labels[-1].adjudication

    with pytest.raises(grpc.RpcError) as caught:
        stub(target).LabelReviewItem(
            monitor_pb2.LabelReviewItemRequest(
                item_id=submitted.item_ids[2], verdict=monitor_pb2.REVIEW_VERDICT_TRUE_POSITIVE
            ),
            metadata=ann,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    agreements = (
        stub(target)
        .GetAgreement(monitor_pb2.GetAgreementRequest(batch="eval-run-7", resamples=200), metadata=ann)
        .agreements
    )
    assert [(a.scope, a.name) for a in agreements] == [
        (monitor_pb2.AGREEMENT_SCOPE_REVIEWER_PAIR, "ann & bob"),
        (monitor_pb2.AGREEMENT_SCOPE_BATCH, "eval-run-7"),
    ]
    pair = agreements[0]
    assert (pair.items, pair.labels) == (4, 8)
    assert pair.percent_agreement.value == pytest.approx(0.75)
    assert pair.HasField("cohen_kappa") and pair.cohen_kappa.value == pytest.approx(0.5)
    assert pair.gwet_ac1.ci_low <= pair.gwet_ac1.value <= pair.gwet_ac1.ci_high
    assert not agreements[1].HasField("cohen_kappa")

    cases = (
        stub(target)
        .ExportAdjudicated(monitor_pb2.ExportAdjudicatedRequest(batch="eval-run-7"), metadata=ann)
        .cases
    )
    assert {c.item_id for c in cases} == {
        submitted.item_ids[0],
        split.item_id,
        submitted.item_ids[2],
        submitted.item_ids[3],
    }
    decided_case = next(c for c in cases if c.item_id == split.item_id)
    assert decided_case.final_verdict == monitor_pb2.REVIEW_VERDICT_BAD
    assert list(decided_case.reviewer_notes) == [
        "ann: ann says good",
        "bob: bob says bad",
        "lead: fails the criteria",
    ]


def test_flags_are_review_items_and_bad_requests_are_rejected(
    monitor: tuple[str, FlagStore], issuer: DevIssuer
) -> None:
    target, store = monitor
    answer = "Pay to GB82 WEST 1234 5698 7654 32."
    store.record(
        events_pb2.InteractionEvent(event_id="grpc-e1", user_id="u", question="q?", answer=answer),
        [Finding("pii", Severity.HIGH, "answer contains an IBAN", ("GB** 32",), (Span("answer", 7, 34),))],
    )
    ann = reviewer(issuer, "ann")
    listed = stub(target).ListReviewItems(monitor_pb2.ListReviewItemsRequest(detector="pii"), metadata=ann)
    [item] = listed.items
    assert (item.interaction_id, item.severity, item.reason) == (
        "grpc-e1",
        monitor_pb2.SEVERITY_HIGH,
        "answer contains an IBAN",
    )
    # The evidence spans travel with the item and the flag, and point at the IBAN in the answer.
    assert [(s.field, s.start, s.end) for s in item.spans] == [("answer", 7, 34)]
    assert answer[item.spans[0].start : item.spans[0].end] == "GB82 WEST 1234 5698 7654 32"
    fetched = stub(target).GetReviewItem(monitor_pb2.GetReviewItemRequest(item_id=item.item_id), metadata=ann)
    assert fetched.item.spans == item.spans
    [flag] = (
        stub(target).ListFlags(monitor_pb2.ListFlagsRequest(interaction_id="grpc-e1"), metadata=ann).flags
    )
    assert [(s.field, s.start, s.end) for s in flag.spans] == [("answer", 7, 34)]
    assert item.due_at.ToSeconds() - item.created_at.ToSeconds() == 4 * 3600
    for request, method in [
        (monitor_pb2.GetReviewItemRequest(item_id="nope"), "GetReviewItem"),
        (monitor_pb2.LabelReviewItemRequest(item_id=item.item_id), "LabelReviewItem"),
        (monitor_pb2.GetAgreementRequest(confidence=1.5), "GetAgreement"),
        (monitor_pb2.CommentReviewItemRequest(item_id=item.item_id, text=" "), "CommentReviewItem"),
        (monitor_pb2.SubmitForReviewRequest(), "SubmitForReview"),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            getattr(stub(target), method)(request, metadata=ann)
        expected = (
            grpc.StatusCode.NOT_FOUND if method == "GetReviewItem" else grpc.StatusCode.INVALID_ARGUMENT
        )
        assert caught.value.code() == expected, method
        assert caught.value.details()
    commented = (
        stub(target)
        .CommentReviewItem(
            monitor_pb2.CommentReviewItemRequest(item_id=item.item_id, text="looks like test data"),
            metadata=ann,
        )
        .item
    )
    assert [(c.author, c.text) for c in commented.comments] == [("ann", "looks like test data")]


def test_cli_exports_adjudicated_cases_as_jsonl(
    monitor: tuple[str, FlagStore], issuer: DevIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``copilot review export`` against the running monitor, signing in through the dev issuer as ops."""
    target, store = monitor
    queue = ReviewQueue(store)
    [item_id] = queue.submit(
        [
            EvaluationSample(
                "Which budget?",
                "412,000 USD [1].",
                [common_pb2.Passage(text="412,000 USD")],
                "cited",
                "cli-run",
            )
        ],
        labels_required=1,
    )
    queue.label(item_id, "ops", Verdict.GOOD, "correct and cited", may_adjudicate=False)
    home = tmp_path / "home"
    # The CLI finds the stack through its state file; this process stands in for every component's pid.
    Stack(
        str(home), issuer.issuer, issuer.audience, str(SAMPLE_USERS),
        [Component("monitor", os.getpid(), int(target.rsplit(":", 1)[1]), "grpc")],
    ).save()  # fmt: skip
    monkeypatch.setenv("COPILOT_HOME", str(home))
    out = tmp_path / "cases.jsonl"
    assert cli.main(["review", "export", "--batch", "cli-run", "--out", str(out)]) == 0
    [line] = out.read_text().splitlines()
    case = json.loads(line)
    assert {k: case[k] for k in ("question", "answer", "detector", "final_verdict", "reviewer_notes")} == {
        "question": "Which budget?",
        "answer": "412,000 USD [1].",
        "detector": "evaluation",
        "final_verdict": "good",
        "reviewer_notes": ["ops: correct and cited"],
    }
    assert case["passages"][0]["text"] == "412,000 USD"
    assert cli.main(["review", "list", "--batch", "cli-run"]) == 0
    assert cli.main(["review", "export", "--out", str(tmp_path / "missing-dir" / "x.jsonl")]) == 2

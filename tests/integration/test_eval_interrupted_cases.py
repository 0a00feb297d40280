"""A flagged answer the caller cut off (``ReviewItem.interrupted``, ``Flag.interrupted``), from a real monitor
over gRPC with real signed tokens to the CLI: `copilot flags` and `copilot review list` mark it,
`copilot review export` writes the mark, and `copilot eval --import-golden` (from the monitor, and from the
export file) keeps it on the golden question, so the cut-off answer is never scored as a whole one."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from copilot import cli
from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.events.v1 import events_pb2
from copilot.launcher import Component, Stack
from copilot.settings import AuthSettings
from services.evaluation.golden import load_golden
from services.monitor.detectors import Finding, Severity
from services.monitor.flagstore import FlagStore
from services.monitor.review import ReviewPolicy, ReviewQueue, Verdict
from tests.conftest import SAMPLE_USERS
from tests.integration.monitor_standins import serve_monitor

MEMO = common_pb2.Passage(uri="/corpus/finance/q3-2026-budget-memo.md", access_reason="group:finance")
CUT, WHOLE = "What is the Q3 travel budget?", "What is the Q3 hotel limit?"


@pytest.fixture()
def monitor(auth_settings: AuthSettings, tmp_path: Path) -> Iterator[str]:
    """A monitor holding two resolved ungrounded flags judged false positives: one on an answer the caller
    cut off, one on a whole answer."""
    store = FlagStore(tmp_path / "monitor.sqlite", ReviewPolicy(labels_required=1))
    for event_id, question, answer, interrupted in (
        ("cut", CUT, "The travel budget is 412,", True),
        ("whole", WHOLE, "Hotels are capped at 250 USD a night [1].", False),
    ):
        event = events_pb2.InteractionEvent(
            event_id=event_id,
            user_id="u1",
            question=question,
            answer=answer,
            passages=[MEMO],
            interrupted=interrupted,
        )
        store.record(event, [Finding("ungrounded", Severity.LOW, "no source supports it", ())])
    queue = ReviewQueue(store)
    for flag in store.list_flags():
        queue.label(flag.flag_id, "ops", Verdict.FALSE_POSITIVE, "fine", may_adjudicate=False)

    server = serve_monitor(store, auth_settings)
    yield f"127.0.0.1:{server.port}"
    server.stop(1)
    store.close()


@pytest.fixture()
def stack_home(monitor: str, issuer: DevIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The CLI finds the stack through its state file; this process stands in for every component's pid.
    home = tmp_path / "home"
    Stack(
        str(home), issuer.issuer, issuer.audience, str(SAMPLE_USERS),
        [Component("monitor", os.getpid(), int(monitor.rsplit(":", 1)[1]), "grpc")],
    ).save()  # fmt: skip
    monkeypatch.setenv("COPILOT_HOME", str(home))
    # `copilot eval` needs no other service to import from the monitor.
    for service in ("RETRIEVAL", "GENERATION", "INGEST"):
        monkeypatch.setenv(f"COPILOT_EVAL_{service}_TARGET", "127.0.0.1:9")
    monkeypatch.setenv("COPILOT_EVAL_MONITOR_TARGET", monitor)
    monkeypatch.setenv("COPILOT_EVAL_ISSUER", issuer.issuer)
    monkeypatch.setenv("COPILOT_EVAL_CREDENTIALS_FILE", str(SAMPLE_USERS))
    return home


def test_flags_mark_the_answer_the_caller_cut_off(
    stack_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # one table row a line
    assert cli.main(["flags"]) == 0
    rows = {line for line in capsys.readouterr().out.splitlines() if "What is the Q3" in line}
    assert {CUT in row for row in rows if "interrupted" in row} == {True}
    assert any(WHOLE in row and "interrupted" not in row for row in rows)

    assert cli.main(["flags", "--json"]) == 0
    flags = json.loads(capsys.readouterr().out)["flags"]
    assert {f["question"]: f.get("interrupted", False) for f in flags} == {CUT: True, WHOLE: False}


def test_review_list_and_export_mark_the_answer_the_caller_cut_off(
    stack_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # one table row a line
    assert cli.main(["review", "list"]) == 0
    rows = {line for line in capsys.readouterr().out.splitlines() if "What is the Q3" in line}
    assert {CUT in row for row in rows if "interrupted" in row} == {True}
    assert any(WHOLE in row and "interrupted" not in row for row in rows)

    out = tmp_path / "cases.jsonl"
    assert cli.main(["review", "export", "--out", str(out)]) == 0
    cases = [json.loads(line) for line in out.read_text().splitlines()]
    assert {c["question"]: c["interrupted"] for c in cases} == {CUT: True, WHOLE: False}

    golden = tmp_path / "golden.jsonl"
    assert cli.main(["eval", "--import-golden", str(out), "--set", str(golden)]) == 0
    assert {i.question: (i.interrupted, i.scores_answer_text) for i in load_golden(golden)} == {
        CUT: (True, False),
        WHOLE: (False, True),
    }


def test_eval_import_from_the_monitor_marks_the_answer_the_caller_cut_off(
    stack_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    golden = tmp_path / "golden.jsonl"

    code = cli.main(["eval", "--import-golden", "--set", str(golden)])

    assert code == 0, capsys.readouterr().err
    items = {i.question: i for i in load_golden(golden)}
    assert (items[CUT].interrupted, items[CUT].reference_answer) == (True, "The travel budget is 412,")
    assert (items[WHOLE].interrupted, items[WHOLE].role) == (False, "finance")

"""Golden sets: questions with who asks them and what a good answer draws on, one JSON object a line.

    {"id": "fin-travel", "question": "What is the Q3 2026 travel budget?", "user": "alice",
     "expected_sources": ["finance/q3-2026-budget-memo.md"], "reference_answer": "412,000 USD."}

``user`` names the asker; ``role`` instead picks a user holding that group at run time. Expected and
forbidden sources are paths matched against the end of a passage's uri ("finance/" matches a folder);
an expected source may carry a relevance grade: {"doc": "...", "grade": 2}. ``must_refuse`` marks a
question the copilot must decline, because the asker may not read the answer or no document covers it.
``interrupted`` marks a reference answer that is only the beginning of an answer the caller cut off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from services.evaluation.shape import validated


class EvalInputError(ValueError):
    """A golden set, probe suite, variants file or report that cannot be used; says where and why."""


# A path, tag or name: a string with something in it.
Name = Annotated[StrictStr, StringConstraints(min_length=1)]
# An id or a question: the spaces around it do not count.
Stripped = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]
_GRADED = '{"doc": path, "grade": n}'


@dataclass(frozen=True, config=ConfigDict(json_schema_extra={"must_be": f"a path or {_GRADED}"}))
class ExpectedSource:
    doc: Name
    grade: Annotated[StrictInt, Field(ge=1)] = 1

    @model_validator(mode="before")
    @classmethod
    def _plain_path(cls, data: Any) -> Any:
        # A plain path is a source of grade 1.
        return {"doc": data} if isinstance(data, str) else data


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class GoldenItem:
    id: Stripped
    question: Stripped
    user: StrictStr = ""
    role: StrictStr = ""
    # A list even for one path: a lone string would otherwise be read one character at a time.
    expected_sources: Annotated[
        tuple[ExpectedSource, ...], Field(json_schema_extra={"must_be": f"a list of paths or {_GRADED}"})
    ] = ()
    reference_answer: Annotated[StrictStr, StringConstraints(strip_whitespace=True)] = ""
    must_refuse: StrictBool = False
    forbidden_sources: tuple[Name, ...] = ()
    tags: tuple[Name, ...] = ()
    notes: StrictStr = ""
    # The reference answer is the beginning of an answer the caller cut off (ReviewItem.interrupted): a
    # whole answer would be scored down against it, so it is not compared with answers.
    interrupted: StrictBool = False

    @model_validator(mode="after")
    def _consistent(self) -> GoldenItem:
        if not (self.user or self.role):
            raise ValueError("give the asking user (user) or a role to pick one (role)")
        if self.must_refuse and self.expected_sources:
            raise ValueError(
                "a question that must be refused expects no sources; put the documents the asker may not "
                "see in forbidden_sources"
            )
        return self

    @property
    def scores_answer_text(self) -> bool:
        """Whether answers are compared with the reference answer (similarity, token F1)."""
        return bool(self.reference_answer) and not self.interrupted

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "question": self.question}
        if self.user:
            out["user"] = self.user
        if self.role:
            out["role"] = self.role
        if self.expected_sources:
            out["expected_sources"] = [
                s.doc if s.grade == 1 else {"doc": s.doc, "grade": s.grade} for s in self.expected_sources
            ]
        if self.reference_answer:
            out["reference_answer"] = self.reference_answer
        if self.must_refuse:
            out["must_refuse"] = True
        if self.forbidden_sources:
            out["forbidden_sources"] = list(self.forbidden_sources)
        if self.tags:
            out["tags"] = list(self.tags)
        if self.notes:
            out["notes"] = self.notes
        if self.interrupted:
            out["interrupted"] = True
        return out


def source_matches(uri: str, ref: str) -> bool:
    """Whether a passage's uri is the referenced document, or lies in the referenced folder ("dir/")."""
    uri = uri.replace("\\", "/")
    if ref.endswith("/"):
        return f"/{ref.strip('/')}/" in f"/{uri}"
    return uri == ref or uri.endswith(f"/{ref}")


def read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object is an error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise EvalInputError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"{path}:{number}: not JSON: {exc.msg}") from exc
        if not isinstance(raw, dict):
            raise EvalInputError(f"{path}:{number}: expected a JSON object, got {type(raw).__name__}")
        yield number, raw


def parse_item(raw: Mapping[str, Any]) -> GoldenItem:
    return validated(GoldenItem, raw)


def load_golden(path: Path, tags: Sequence[str] = ()) -> list[GoldenItem]:
    """Every item of the set, or only those carrying one of ``tags``; ids must be unique."""
    items: list[GoldenItem] = []
    seen: dict[str, int] = {}
    for number, raw in read_jsonl(path):
        try:
            item = parse_item(raw)
        except ValueError as exc:
            raise EvalInputError(f"{path}:{number}: {exc}") from exc
        if item.id in seen:
            raise EvalInputError(f"{path}:{number}: id {item.id!r} already used on line {seen[item.id]}")
        seen[item.id] = number
        items.append(item)
    if tags:
        items = [i for i in items if set(i.tags) & set(tags)]
    if not items:
        which = f" tagged {', '.join(tags)}" if tags else ""
        raise EvalInputError(f"{path}: no questions{which}")
    return items


def append_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    prefix = "" if not existing or existing.endswith("\n") else "\n"
    with path.open("a", encoding="utf-8") as out:
        out.write(prefix + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


# ---- regression cases from the monitor's review queue -------------------------------------------------

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
# Detectors whose confirmed flags mean the copilot should have declined to answer at all.
MUST_REFUSE_DETECTORS = frozenset({"acl_anomaly", "secret"})
# Attacks become red-team probes (`copilot eval --import-probes`), not golden questions.
RED_TEAM_DETECTORS = frozenset({"prompt_injection"})


def _empty_if_null(value: Any) -> Any:
    return "" if value is None else value


def _empty_list_if_null(value: Any) -> Any:
    return [] if value is None else value


# An export may leave a text or a list out as null.
CaseText = Annotated[StrictStr, BeforeValidator(_empty_if_null)]


class _Exported(BaseModel):
    """Read from a line of `copilot review export`, or from ExportAdjudicated as JSON, which may use proto
    names (item_id) or JSON names (itemId). Fields the evaluation does not read are let through."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _proto_names(cls, data: Any) -> Any:
        return {_CAMEL.sub("_", k).lower(): v for k, v in data.items()} if isinstance(data, dict) else data


class CasePassage(_Exported):
    uri: CaseText = ""
    access_reason: CaseText = ""


class ReviewCase(_Exported):
    """An adjudicated review item, as ``golden_from_cases`` and ``probes_from_cases`` read it."""

    item_id: CaseText = ""
    question: CaseText = ""
    answer: CaseText = ""
    detector: CaseText = ""
    final_verdict: CaseText = ""
    reason: CaseText = ""
    reviewer_notes: Annotated[list[StrictStr], BeforeValidator(_empty_list_if_null)] = []
    passages: Annotated[list[CasePassage], BeforeValidator(_empty_list_if_null)] = []
    # The caller cut the answer off while it streamed (ReviewItem.interrupted): ``answer`` is only its
    # beginning.
    interrupted: StrictBool = False

    @field_validator("final_verdict")
    @classmethod
    def _verdict(cls, value: str) -> str:
        # "REVIEW_VERDICT_GOOD" from the monitor, "good" in an export file.
        return value.upper().removeprefix("REVIEW_VERDICT_").lower()


def _only_group(passages: Sequence[CasePassage]) -> str:
    groups = {
        p.access_reason.removeprefix("group:") for p in passages if p.access_reason.startswith("group:")
    }
    return next(iter(groups)) if len(groups) == 1 else ""


def golden_from_cases(
    cases: Sequence[Mapping[str, Any]], default_user: str, existing_ids: Iterable[str] = ()
) -> list[GoldenItem]:
    """Golden items from adjudicated review items (monitor ExportAdjudicated, or ``copilot review export``).

    An answer humans found fine (an evaluation sample judged good, or a flag judged a false positive)
    becomes the reference answer, and the documents it drew on the expected sources; an answer the caller
    cut off stays marked ``interrupted``, so it is never scored as a whole answer. A confirmed flag of a
    detector in MUST_REFUSE_DETECTORS, or a refusal flag judged a false positive (declining was right),
    makes the question one that must be refused; prompt-injection flags are left to the red-team
    suite. The asker is unknown
    (the monitor keeps pseudonyms only): the role is the one group that granted every passage, else
    ``default_user`` asks."""
    taken = set(existing_ids)
    items: list[GoldenItem] = []
    for raw in cases:
        case = validated(ReviewCase, raw)
        question = case.question.strip()
        item_id = f"monitor-{case.item_id or len(taken)}"
        if not question or item_id in taken:
            continue
        taken.add(item_id)
        verdict, detector = case.final_verdict, case.detector
        if detector in RED_TEAM_DETECTORS:
            continue
        # A refusal flag judged a false positive means declining was right: no document should answer it.
        must_refuse = (detector == "refusal" and verdict == "false_positive") or (
            verdict == "true_positive" and detector in MUST_REFUSE_DETECTORS
        )
        fine = verdict in ("good", "false_positive") and not must_refuse
        role = _only_group(case.passages)
        expected = tuple(dict.fromkeys(ExpectedSource(p.uri) for p in case.passages if p.uri)) if fine else ()
        reference = case.answer.strip() if fine else ""
        items.append(
            GoldenItem(
                id=item_id,
                question=question,
                user="" if role else default_user,
                role=role,
                expected_sources=expected,
                reference_answer=reference,
                must_refuse=must_refuse,
                tags=("monitor", detector or "evaluation", verdict or "unknown"),
                notes="; ".join(case.reviewer_notes),
                interrupted=case.interrupted and bool(reference),
            )
        )
    return items

"""Golden sets: questions with who asks them and what a good answer draws on, one JSON object a line.

    {"id": "fin-travel", "question": "What is the Q3 2026 travel budget?", "user": "alice",
     "expected_sources": ["finance/q3-2026-budget-memo.md"], "reference_answer": "412,000 USD."}

``user`` names the asker; ``role`` instead picks a user holding that group at run time. Expected and
forbidden sources are paths matched against the end of a passage's uri ("finance/" matches a folder);
an expected source may carry a relevance grade: {"doc": "...", "grade": 2}. ``must_refuse`` marks a
question the copilot must decline, because the asker may not read the answer or no document covers it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class EvalInputError(ValueError):
    """A golden set, probe suite, variants file or report that cannot be used; says where and why."""


@dataclass(frozen=True)
class ExpectedSource:
    doc: str
    grade: int = 1


@dataclass(frozen=True)
class GoldenItem:
    id: str
    question: str
    user: str = ""
    role: str = ""
    expected_sources: tuple[ExpectedSource, ...] = ()
    reference_answer: str = ""
    must_refuse: bool = False
    forbidden_sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    notes: str = ""

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
        return out


_FIELDS = {f for f in GoldenItem.__dataclass_fields__}


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


def json_kind(value: Any) -> str:
    """What a JSON value is, for messages: "an object", "a list", "a string", "a number"..."""
    if value is None:
        return "null"
    names = {bool: "a boolean", dict: "an object", list: "a list", str: "a string", int: "a number"}
    return names.get(type(value), "a number" if isinstance(value, float) else type(value).__name__)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{what} must be a list of non-empty strings")
    return tuple(value)


def parse_item(raw: Mapping[str, Any]) -> GoldenItem:
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    item_id, question = raw.get("id"), raw.get("question")
    if not isinstance(item_id, str) or not item_id.strip():
        raise ValueError("id must be a non-empty string")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    user, role = raw.get("user", ""), raw.get("role", "")
    if not isinstance(user, str) or not isinstance(role, str) or not (user or role):
        raise ValueError("give the asking user (user) or a role to pick one (role)")
    expected: list[ExpectedSource] = []
    entries = raw.get("expected_sources", [])
    if not isinstance(entries, list):  # a lone path would otherwise be read one character at a time
        raise ValueError(
            'expected_sources must be a list of paths or {"doc": path, "grade": n}, '
            f"not {json_kind(entries)}"
        )
    for entry in entries:
        if isinstance(entry, str) and entry:
            expected.append(ExpectedSource(entry))
        elif isinstance(entry, dict) and isinstance(entry.get("doc"), str) and entry["doc"]:
            grade = entry.get("grade", 1)
            if not isinstance(grade, int) or isinstance(grade, bool) or grade < 1:
                raise ValueError(f"grade of {entry['doc']!r} must be a positive integer")
            expected.append(ExpectedSource(entry["doc"], grade))
        else:
            raise ValueError('expected_sources entries are paths or {"doc": path, "grade": n}')
    must_refuse = raw.get("must_refuse", False)
    if not isinstance(must_refuse, bool):
        raise ValueError("must_refuse must be true or false")
    if must_refuse and expected:
        raise ValueError(
            "a question that must be refused expects no sources; put the documents the asker may not "
            "see in forbidden_sources"
        )
    reference = raw.get("reference_answer", "")
    if not isinstance(reference, str):
        raise ValueError("reference_answer must be a string")
    notes = raw.get("notes", "")
    if not isinstance(notes, str):
        raise ValueError("notes must be a string")
    return GoldenItem(
        id=item_id.strip(),
        question=question.strip(),
        user=user,
        role=role,
        expected_sources=tuple(expected),
        reference_answer=reference.strip(),
        must_refuse=must_refuse,
        forbidden_sources=_strings(raw.get("forbidden_sources", []), "forbidden_sources"),
        tags=_strings(raw.get("tags", []), "tags"),
        notes=notes,
    )


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


def snake_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    """ExportAdjudicated as JSON may use proto names (item_id) or JSON names (itemId); take both."""
    return {_CAMEL.sub("_", k).lower(): v for k, v in record.items()}


def _verdict(value: Any) -> str:
    name = str(value or "")
    return name.removeprefix("REVIEW_VERDICT_").lower()


def _only_group(passages: Sequence[Mapping[str, Any]]) -> str:
    groups = {
        str(p.get("access_reason") or p.get("accessReason") or "").removeprefix("group:")
        for p in passages
        if str(p.get("access_reason") or p.get("accessReason") or "").startswith("group:")
    }
    return next(iter(groups)) if len(groups) == 1 else ""


_CASE_STRINGS = ("item_id", "question", "answer", "detector", "final_verdict", "reason")


def check_case(raw: Mapping[str, Any]) -> None:
    """A ``ValueError`` naming the field of an exported review case (a line of `copilot review export`)
    that ``golden_from_cases`` and ``probes_from_cases`` could not read as what it should be."""
    case = snake_keys(raw)
    for key in _CASE_STRINGS:
        if case.get(key) is not None and not isinstance(case[key], str):
            raise ValueError(f"{key} must be a string, not {json_kind(case[key])}")
    notes = case.get("reviewer_notes")
    if notes is not None and (not isinstance(notes, list) or not all(isinstance(n, str) for n in notes)):
        raise ValueError(f"reviewer_notes must be a list of strings, not {json_kind(notes)}")
    passages = case.get("passages")
    if passages is None:
        return
    if not isinstance(passages, list):
        raise ValueError(f"passages must be a list of objects, not {json_kind(passages)}")
    for n, passage in enumerate(passages):
        if not isinstance(passage, dict):
            raise ValueError(f"passages[{n}] must be an object, not {json_kind(passage)}")
        fields = snake_keys(passage)
        for key in ("uri", "access_reason"):
            if fields.get(key) is not None and not isinstance(fields[key], str):
                raise ValueError(f"passages[{n}].{key} must be a string, not {json_kind(fields[key])}")


def golden_from_cases(
    cases: Sequence[Mapping[str, Any]], default_user: str, existing_ids: Iterable[str] = ()
) -> list[GoldenItem]:
    """Golden items from adjudicated review items (monitor ExportAdjudicated, or ``copilot review export``).

    An answer humans found fine (an evaluation sample judged good, or a flag judged a false positive)
    becomes the reference answer, and the documents it drew on the expected sources. A confirmed flag of a
    detector in MUST_REFUSE_DETECTORS, or a refusal flag judged a false positive (declining was right),
    makes the question one that must be refused; prompt-injection flags are left to the red-team
    suite. The asker is unknown
    (the monitor keeps pseudonyms only): the role is the one group that granted every passage, else
    ``default_user`` asks."""
    taken = set(existing_ids)
    items: list[GoldenItem] = []
    for raw in cases:
        case = snake_keys(raw)
        question = str(case.get("question") or "").strip()
        item_id = f"monitor-{case.get('item_id') or len(taken)}"
        if not question or item_id in taken:
            continue
        taken.add(item_id)
        verdict, detector = _verdict(case.get("final_verdict")), str(case.get("detector") or "")
        if detector in RED_TEAM_DETECTORS:
            continue
        passages = [snake_keys(p) for p in case.get("passages") or []]
        # A refusal flag judged a false positive means declining was right: no document should answer it.
        must_refuse = (detector == "refusal" and verdict == "false_positive") or (
            verdict == "true_positive" and detector in MUST_REFUSE_DETECTORS
        )
        fine = verdict in ("good", "false_positive") and not must_refuse
        role = _only_group(passages)
        expected = (
            tuple(dict.fromkeys(ExpectedSource(str(p["uri"])) for p in passages if p.get("uri")))
            if fine
            else ()
        )
        notes = "; ".join(str(n) for n in case.get("reviewer_notes") or [])
        items.append(
            GoldenItem(
                id=item_id,
                question=question,
                user="" if role else default_user,
                role=role,
                expected_sources=expected,
                reference_answer=str(case.get("answer") or "").strip() if fine else "",
                must_refuse=must_refuse,
                tags=("monitor", detector or "evaluation", verdict or "unknown"),
                notes=notes,
            )
        )
    return items

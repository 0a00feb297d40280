"""The variants file: named settings to compare, how to pick the best, and the regression gate.

baseline: default
select_by: citation_recall
variants:
  default: {}
  dense: {search_mode: dense}
  small-chunks: {server_env: {COPILOT_INGEST_CHUNK_TOKENS: "120"}}
gate:
  rules:
    hit@5: {max_drop: 0.05}
    redteam:rbac_leak: {min: 1.0}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.evaluation.golden import EvalInputError
from services.evaluation.scoring import summary_metrics

# The launcher settings a variant's own stack gets fresh values of (stacks.stack_env): a variant setting
# one of them would start its stack in the running one's home or on its ports.
STACK_OWN = frozenset(
    {"COPILOT_HOME", "COPILOT_BASE_PORT", "COPILOT_KAFKA_PORT", "COPILOT_ISSUER_PORT", "COPILOT_REVIEW_PORT"}
)


class Variant(BaseModel):
    """What one variant changes. Everything but ``server_env`` travels with each request; ``server_env``
    needs a stack started with those settings (chunking, relevance cut-off, prompt) and the corpus
    ingested into it."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    # Model catalog name for AnswerRequest.model; empty means the server default.
    model: str = ""
    # Passages the answer is written from; 0 means the server default.
    top_k: int = Field(default=0, ge=0)
    search_mode: Literal["default", "dense", "sparse", "hybrid"] = "default"
    rerank: bool = False
    server_env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _own_stack_settings(self) -> Variant:
        taken = sorted(STACK_OWN & set(self.server_env))
        if taken:
            raise ValueError(
                f"server_env may not set {', '.join(taken)}: the variant's stack gets a home and ports of "
                "its own"
            )
        return self

    @property
    def needs_own_stack(self) -> bool:
        return bool(self.server_env)

    def settings(self) -> dict[str, object]:
        return self.model_dump(exclude_defaults=True)


class GateRule(BaseModel):
    """Limits on one metric: against the baseline report (max_drop, max_rise) or absolute (min, max)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    max_drop: float | None = Field(default=None, ge=0)
    max_rise: float | None = Field(default=None, ge=0)
    min_value: float | None = Field(default=None, alias="min")
    max_value: float | None = Field(default=None, alias="max")

    @model_validator(mode="after")
    def _some_limit(self) -> GateRule:
        if all(v is None for v in (self.max_drop, self.max_rise, self.min_value, self.max_value)):
            raise ValueError("a gate rule needs max_drop, max_rise, min or max")
        return self


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Also hold each role to the rules, not only the overall figures. Roles have few questions each,
    # so their figures move more by chance.
    per_role: bool = False
    rules: dict[str, GateRule] = Field(default_factory=dict)


class BootstrapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resamples: int = Field(default=2000, ge=100)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    seed: int = 2026


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    baseline: str = "default"
    # The metric that names the best variant (the one to deploy).
    select_by: str = "citation_recall"
    # Cut-offs for hit@k; nDCG is taken at the largest.
    retrieval_k: list[int] = Field(default_factory=lambda: [1, 3, 5])
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    variants: dict[str, Variant] = Field(default_factory=lambda: {"default": Variant()})
    gate: GateConfig = Field(default_factory=GateConfig)

    @model_validator(mode="after")
    def _consistent(self) -> EvalConfig:
        if not self.variants:
            raise ValueError("variants: name at least one variant")
        if self.baseline not in self.variants:
            raise ValueError(f"baseline {self.baseline!r} is not one of the variants")
        if not self.retrieval_k or any(k < 1 for k in self.retrieval_k):
            raise ValueError("retrieval_k: give positive cut-offs such as [1, 3, 5]")
        self.retrieval_k = sorted(set(self.retrieval_k))
        known = summary_metrics(self.retrieval_k)
        if self.select_by not in known:
            raise ValueError(
                f"select_by {self.select_by!r} is not a metric of the run; pick one of {', '.join(known)}"
            )
        return self

    def pick(self, names: list[str]) -> list[tuple[str, Variant]]:
        """The variants asked for, in the order asked; the baseline variant when none is named."""
        unknown = [n for n in names if n not in self.variants]
        if unknown:
            raise EvalInputError(
                f"unknown variant(s) {', '.join(unknown)}; the variants file has {', '.join(self.variants)}"
            )
        chosen = list(dict.fromkeys(names)) or [self.baseline]
        return [(n, self.variants[n]) for n in chosen]


def load_config(path: Path | None) -> EvalConfig:
    if path is None:
        return EvalConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise EvalInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise EvalInputError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise EvalInputError(f"{path}: not YAML: {exc}") from exc
    try:
        return EvalConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise EvalInputError(f"{path}: {problems}") from exc

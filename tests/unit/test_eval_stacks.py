"""A server_env variant's own stack: what `copilot up` and `copilot ingest` run under, built without
starting anything. The stack itself starts in tests/e2e (the chunking variant takes minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from copilot.launcher import LauncherSettings
from services.evaluation.client import ApiError
from services.evaluation.stacks import own_stack, stack_env
from services.evaluation.variants import STACK_OWN, EvalConfig, load_config
from tests.conftest import REPO

# The environment of a shell where a stack is up on non-default ports (as in tests/e2e); below 1024, so
# that no free port the OS hands out can equal one by chance.
RUNNING = {
    "PATH": "/usr/bin",
    "COPILOT_HOME": "/srv/copilot",
    "COPILOT_BASE_PORT": "900",
    "COPILOT_KAFKA_PORT": "910",
    "COPILOT_ISSUER_PORT": "920",
    "COPILOT_REVIEW_PORT": "930",
    "COPILOT_MODEL": "qwen2.5-coder-0.5b",
    "COPILOT_INGEST_CHUNK_TOKENS": "200",
}
SMALL_CHUNKS = {"COPILOT_INGEST_CHUNK_TOKENS": "120", "COPILOT_INGEST_CHUNK_OVERLAP_TOKENS": "20"}


def test_the_variants_settings_reach_the_stack_over_the_callers_environment(tmp_path: Path) -> None:
    env = stack_env(SMALL_CHUNKS, tmp_path / "variant", RUNNING)

    assert env["COPILOT_INGEST_CHUNK_TOKENS"] == "120"
    assert env["COPILOT_INGEST_CHUNK_OVERLAP_TOKENS"] == "20"
    # Everything else the caller set still holds: the same model, the same tools on the PATH.
    assert (env["COPILOT_MODEL"], env["PATH"]) == ("qwen2.5-coder-0.5b", "/usr/bin")


def test_the_stack_gets_a_home_and_ports_of_its_own(tmp_path: Path) -> None:
    env = stack_env(SMALL_CHUNKS, tmp_path / "variant", RUNNING)

    assert set(env) >= STACK_OWN
    assert env["COPILOT_HOME"] == str(tmp_path / "variant")
    ports = [int(env[k]) for k in sorted(STACK_OWN - {"COPILOT_HOME"})]
    assert len(set(ports)) == len(ports)
    assert not {str(p) for p in ports} & {RUNNING[k] for k in STACK_OWN - {"COPILOT_HOME"}}


def test_the_launcher_reads_the_stacks_home_and_ports_by_those_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = stack_env({}, tmp_path / "variant", RUNNING)
    for name in STACK_OWN:
        monkeypatch.setenv(name, env[name])

    settings = LauncherSettings()

    assert settings.home == tmp_path / "variant"
    assert [settings.base_port, settings.kafka_port, settings.issuer_port, settings.review_port] == [
        int(env[k])
        for k in ("COPILOT_BASE_PORT", "COPILOT_KAFKA_PORT", "COPILOT_ISSUER_PORT", "COPILOT_REVIEW_PORT")
    ]


def test_a_variant_cannot_set_its_stacks_home_or_ports() -> None:
    for name in sorted(STACK_OWN):
        with pytest.raises(ValueError, match=f"server_env may not set {name}"):
            EvalConfig.model_validate({"variants": {"default": {}, "mine": {"server_env": {name: "1"}}}})


def test_without_the_corpus_no_stack_is_started(tmp_path: Path) -> None:
    with (
        pytest.raises(ApiError, match="corpus folder .*nowhere does not exist"),
        own_stack(SMALL_CHUNKS, tmp_path / "nowhere", tmp_path / "stacks"),
    ):
        pass
    assert not (tmp_path / "stacks").exists()


def test_the_sample_server_env_variants_name_settings_and_files_that_exist() -> None:
    config = load_config(REPO / "sample" / "eval" / "variants.yaml")
    own = {name: v.server_env for name, v in config.variants.items() if v.needs_own_stack}

    assert set(own) >= {"small-chunks", "strict-relevance", "cite-every-sentence"}
    # The services run in the repository root, where a relative path is read.
    rules = own["cite-every-sentence"]["COPILOT_GENERATION_SYSTEM_RULES_FILE"]
    assert (REPO / rules).is_file()
    assert (
        stack_env(own["cite-every-sentence"], Path("/tmp/x"), {})["COPILOT_GENERATION_SYSTEM_RULES_FILE"]
        == rules
    )

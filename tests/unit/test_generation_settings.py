from pathlib import Path

import pytest

from services.generation.settings import GenerationSettings


def test_the_default_model_is_served_first_and_each_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPILOT_GENERATION_MODEL", "qwen2.5-coder-1.5b")
    monkeypatch.setenv("COPILOT_GENERATION_MODELS", '["smollm2-135m", "qwen2.5-coder-1.5b"]')

    assert GenerationSettings().served_models() == ["qwen2.5-coder-1.5b", "smollm2-135m"]


def test_the_database_is_off_unless_configured_and_then_names_its_readers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert GenerationSettings().database.url == ""

    monkeypatch.setenv("COPILOT_GENERATION_DATABASE__URL", "sqlite:///sample/sales.db")
    monkeypatch.setenv("COPILOT_GENERATION_DATABASE__READERS", '["group:finance"]')
    monkeypatch.setenv("COPILOT_GENERATION_DATABASE__TENANT", "acme")
    monkeypatch.setenv("COPILOT_GENERATION_DATABASE__EXAMPLES_FILE", "sample/text2sql_examples.yaml")
    database = GenerationSettings().database

    assert (database.readers, database.tenant, database.examples_file) == (
        ["group:finance"],
        "acme",
        Path("sample/text2sql_examples.yaml"),
    )

    monkeypatch.delenv("COPILOT_GENERATION_DATABASE__TENANT")
    with pytest.raises(ValueError, match="database.tenant must name the tenant"):
        GenerationSettings()
    monkeypatch.delenv("COPILOT_GENERATION_DATABASE__READERS")
    with pytest.raises(ValueError, match="database.readers must say who may query"):
        GenerationSettings()


def test_the_system_rules_file_is_unset_unless_a_prompt_variant_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert GenerationSettings().system_rules_file is None

    monkeypatch.setenv("COPILOT_GENERATION_SYSTEM_RULES_FILE", "sample/eval/prompts/one-sentence.txt")

    assert GenerationSettings().system_rules_file == Path("sample/eval/prompts/one-sentence.txt")

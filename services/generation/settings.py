from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from copilot.settings import ServiceSettings


class DatabaseSettings(BaseModel):
    """The read-only SQL database the agent's query_database tool answers from; off when ``url`` is empty."""

    # SQLAlchemy URL: sqlite:///path/to/file.db (opened read-only) or postgresql+psycopg://... (each query
    # runs in a read-only transaction; give the role SELECT rights only, too).
    url: str = ""
    # ACL entries allowed to query it, as on documents: "group:finance", "user:alice" or "everyone".
    readers: list[str] = Field(default_factory=list)
    # The tenant whose users ``readers`` name: entries mean something only within a tenant, so a
    # "group:finance" of another tenant may not query it.
    tenant: str = ""
    # Question -> SQL pairs shown to the model (YAML list of {question, sql}); the closest ones are used.
    examples_file: Path | None = None
    # Describes the database to the model when it picks a tool, e.g. "sales: customers, orders, products".
    description: str = ""
    statement_timeout_s: float = 5.0
    max_rows: int = 50
    # Most relevant tables (and examples) shown to the model for one question.
    schema_tables: int = 6
    examples: int = 3

    @model_validator(mode="after")
    def _readers_named(self) -> DatabaseSettings:
        if self.url and not self.readers:
            raise ValueError(
                "database.readers must say who may query the database (ACL entries such as "
                "'group:finance' or 'everyone')"
            )
        if self.url and not self.tenant:
            raise ValueError("database.tenant must name the tenant whose users database.readers are")
        return self


class GenerationSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="COPILOT_GENERATION_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 50053
    retrieval_target: str = "127.0.0.1:50052"
    # Passages one document may give an answer (retrieval's search default is one). The small models
    # cite more reliably with a few chunks of the best document than with a single one.
    passages_per_document: int = Field(default=3, ge=1)
    engine: Literal["llama_cpp", "vllm"] = "llama_cpp"
    # The default model; requests may pick any of ``model`` and ``models`` by name.
    model: str = "qwen2.5-coder-1.5b"
    # More models to serve, one Ray Serve deployment each (JSON list, e.g. '["qwen2.5-coder-0.5b"]').
    models: list[str] = Field(default_factory=list)
    model_cache_dir: Path = Path(".copilot/models")
    engine_threads: int = 2
    context_tokens: int = 4096
    max_answer_tokens: int = 256
    engine_start_timeout_s: float = 300
    # How often the engines' health is checked; the gRPC health turns NOT_SERVING while one is down.
    engine_health_period_s: float = 5.0
    # Ray's session directory; keep the path short, Ray puts Unix sockets under it.
    ray_temp_dir: Path | None = None
    default_top_k: int = 4
    # Passages scoring below this cosine similarity are treated as not answering the question.
    min_relevance: float = 0.45
    max_question_chars: int = 4000
    # A text file with the rules the model answers by, in place of the built-in ones (a prompt variant,
    # evaluated with `copilot eval`); read once at start. It must ask for the exact refusal sentence.
    system_rules_file: Path | None = None
    # Conversations kept in memory for follow-ups, least recently used dropped first, and turns kept of each.
    max_conversations: int = 10_000
    max_history_turns: int = 4
    # Tool calls the agent may make before it must answer (requests with use_tools).
    agent_max_steps: int = 4
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    def served_models(self) -> list[str]:
        """The default model first, then the others, each once."""
        return list(dict.fromkeys([self.model, *self.models]))

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import SettingsConfigDict

from copilot.settings import ServiceSettings


class GenerationSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="COPILOT_GENERATION_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 50053
    retrieval_target: str = "127.0.0.1:50052"
    engine: Literal["llama_cpp", "vllm"] = "llama_cpp"
    model: str = "qwen2.5-coder-1.5b"
    model_cache_dir: Path = Path(".copilot/models")
    engine_threads: int = 2
    context_tokens: int = 4096
    max_answer_tokens: int = 256
    engine_start_timeout_s: float = 300
    # Ray's session directory; keep the path short, Ray puts Unix sockets under it.
    ray_temp_dir: Path | None = None
    default_top_k: int = 4
    # Passages scoring below this cosine similarity are treated as not answering the question.
    min_relevance: float = 0.45
    max_question_chars: int = 4000
    # Conversations kept in memory for follow-ups, least recently used dropped first, and turns kept of each.
    max_conversations: int = 10_000
    max_history_turns: int = 4

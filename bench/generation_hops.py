"""The generation benchmark with SmolLM2-135M: its answers are fast enough for the serving hops to show."""

from __future__ import annotations

from rich.console import Console

from bench import generation


def run(console: Console) -> str:
    return generation.run(console, model="smollm2-135m")

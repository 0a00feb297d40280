"""A stack of its own for a variant that needs different server settings (chunking, relevance cut-off,
prompt): started with `copilot up` under those settings on free ports, the corpus ingested into it with
`copilot ingest`, stopped with `copilot down` whatever happens."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from copilot.launcher import REPO_ROOT, Stack
from copilot.ports import free_base_port, free_port
from services.evaluation.client import ApiError

_START_TIMEOUT_S = 900


def _free_base_port() -> int:
    """The first of five consecutive free ports (store and the four services)."""
    try:
        return free_base_port()
    except RuntimeError as error:
        raise ApiError("found no five consecutive free ports for a variant's stack") from error


def _copilot(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "copilot.cli", *args],
        env=dict(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=_START_TIMEOUT_S,
    )


def stack_env(server_env: Mapping[str, str], home: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """What `copilot up` and `copilot ingest` run under for a variant: ``environ`` (the caller's), the
    variant's settings over it, and a home and ports of the stack's own over both, so that it never takes
    over the stack that is up (whose ports ``environ`` may name)."""
    own = {
        "COPILOT_HOME": str(home),
        "COPILOT_BASE_PORT": str(_free_base_port()),
        "COPILOT_KAFKA_PORT": str(free_port()),
        "COPILOT_ISSUER_PORT": str(free_port()),
        "COPILOT_REVIEW_PORT": str(free_port()),
    }
    # The launcher hands its environment to the services, which is how the overrides reach them.
    return {**environ, **server_env, **own}


@contextmanager
def own_stack(server_env: Mapping[str, str], corpus: Path, parent: Path) -> Iterator[Stack]:
    if not corpus.is_dir():
        raise ApiError(f"corpus folder {corpus} does not exist; a variant with server_env ingests it")
    parent.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="variant-", dir=parent))
    env = stack_env(server_env, home, os.environ)
    try:
        up = _copilot(env, "up")
        if up.returncode != 0:
            raise ApiError(f"the variant's stack did not start: {up.stderr.strip()[-500:]}")
        ingest = _copilot(env, "ingest", str(corpus))
        if ingest.returncode != 0:
            raise ApiError(
                f"ingesting {corpus} into the variant's stack failed: {ingest.stderr.strip()[-500:]}"
            )
        stack = Stack.load(home)
        if stack is None:
            raise ApiError(f"the variant's stack at {home} left no state file")
        yield stack
    finally:
        _copilot(env, "down")

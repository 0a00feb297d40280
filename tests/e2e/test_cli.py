"""The whole stack through its public surface: `copilot up`, the CLI commands, `copilot down`.

Everything is real: Tansu, the dev issuer's signed tokens, Qdrant's engine in the store host, the four
gRPC services in their own processes, Ray Serve with a packaged model on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from copilot.launcher import Stack, descendants, pid_alive
from copilot.ports import free_base_port, free_port
from tests.conftest import REPO, SAMPLE_CORPUS, shows_secret_figure

pytestmark = pytest.mark.slow

# The e2e model must cite reliably; the 135M model is only good for wiring tests.
E2E_MODEL = os.environ.get("COPILOT_E2E_MODEL", "qwen2.5-coder-1.5b")
FINANCE_QUESTION = "What is the Q3 2026 travel budget?"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("copilot-home")
    environment = {
        **os.environ,
        "COPILOT_HOME": str(home),
        "COPILOT_BASE_PORT": str(free_base_port()),
        "COPILOT_KAFKA_PORT": str(free_port()),
        "COPILOT_ISSUER_PORT": str(free_port()),
        # A developer's own stack may hold the default review page port.
        "COPILOT_REVIEW_PORT": str(free_port()),
        "COPILOT_MODEL": E2E_MODEL,
        "COPILOT_LOG_FORMAT": "text",
    }
    yield environment
    subprocess.run([sys.executable, "-m", "copilot.cli", "down"], env=environment, cwd=REPO, timeout=120)


def copilot(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "copilot.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def stack(env: dict[str, str]) -> Stack:
    up = copilot(env, "up")
    assert up.returncode == 0, up.stderr
    loaded = Stack.load(Path(env["COPILOT_HOME"]))
    assert loaded is not None
    return loaded


def test_commands_fail_clearly_before_the_stack_is_up(env: dict[str, str]) -> None:
    result = copilot(env, "ask", "hello?", "--user", "alice")
    assert result.returncode == 2
    assert "not running" in result.stderr and "copilot up" in result.stderr


def test_up_is_idempotent(env: dict[str, str], stack: Stack) -> None:
    again = copilot(env, "up")
    assert again.returncode == 0
    assert "already running" in again.stderr
    assert Stack.load(Path(env["COPILOT_HOME"])) == stack


def test_ingest_search_ask_flags(env: dict[str, str], stack: Stack) -> None:
    ingest = copilot(env, "ingest", str(SAMPLE_CORPUS))
    assert ingest.returncode == 0, ingest.stderr
    assert "0 failed" in ingest.stderr
    again = copilot(env, "ingest", str(SAMPLE_CORPUS))
    assert "0 new, 0 updated" in again.stderr, "re-ingesting an unchanged corpus must be a no-op"

    alice_hits = json.loads(copilot(env, "search", FINANCE_QUESTION, "--user", "alice", "--json").stdout)[
        "hits"
    ]
    assert alice_hits[0]["uri"].endswith("finance/q3-2026-budget-memo.md")
    bob_hits = json.loads(copilot(env, "search", FINANCE_QUESTION, "--user", "bob", "--json").stdout)["hits"]
    assert all("/finance/" not in h["uri"] for h in bob_hits)

    alice = copilot(env, "ask", FINANCE_QUESTION, "--user", "alice", "--json")
    assert alice.returncode == 0, alice.stderr
    answer = json.loads(alice.stdout)
    assert not answer["refused"]
    assert "412,000" in answer["answer"]
    assert answer["sources"], f"the answer should cite its source: {answer['answer']!r}"
    assert any(s["uri"].endswith("q3-2026-budget-memo.md") for s in answer["sources"])
    assert answer["conversation_id"]
    # Every sentence gets a verdict. Whether the small model cited the right chunk of the memo is what the
    # verdict judges, not this test.
    assert answer["sentences"] and all(
        s["verdict"] != "SUPPORT_VERDICT_UNSPECIFIED" for s in answer["sentences"]
    )

    bob = copilot(env, "ask", FINANCE_QUESTION, "--user", "bob", "--json")
    assert bob.returncode == 0, bob.stderr
    refusal = json.loads(bob.stdout)
    assert refusal["refused"]
    assert "do not cover" in refusal["answer"]
    assert not shows_secret_figure(refusal["answer"]) and "memo" not in refusal["answer"].lower()
    assert refusal["sources"] == []

    # The monitor consumed both interactions from Kafka; the refusal is flagged for coverage review.
    deadline = time.monotonic() + 60
    flags: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        listed = copilot(env, "flags", "--json", "--limit", "100")
        assert listed.returncode == 0, listed.stderr
        flags = json.loads(listed.stdout)["flags"]
        if any(f.get("interaction_id") == refusal["interaction_id"] for f in flags):
            break
        time.sleep(1)
    refusal_flags = [f for f in flags if f.get("interaction_id") == refusal["interaction_id"]]
    assert refusal_flags and refusal_flags[0]["detector"] == "refusal"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ask", "hello", "--user", "mallory", "--password", "x"), "unknown user or wrong password"),
        (("ask", "   ", "--user", "alice"), "question is empty"),
        (("ingest", "/no/such/path"), "no such file or directory"),
        (("search", "", "--user", "alice"), "query is empty"),
        (("flags", "--user", "alice"), "copilot-reviewer"),
    ],
)
def test_bad_input_gets_a_clear_error_and_nonzero_exit(
    env: dict[str, str], stack: Stack, args: tuple[str, ...], message: str
) -> None:
    result = copilot(env, *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_expired_token_is_rejected_by_the_services(env: dict[str, str], stack: Stack) -> None:
    import grpc

    from copilot.devissuer import DevIssuer, load_or_create_key, load_users
    from copilot.grpc_client import bearer, open_channel
    from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

    home = Path(env["COPILOT_HOME"])
    dev = DevIssuer(
        stack.issuer,
        stack.audience,
        load_or_create_key(home / "issuer" / "key.pem"),
        load_users(Path(stack.users_file)),
    )
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(stack.endpoint("retrieval")))
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(retrieval_pb2.SearchRequest(query="budget"), metadata=bearer(dev.mint("alice", exp=1)))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in info.value.details()


def test_down_leaves_no_process_behind(env: dict[str, str], stack: Stack) -> None:
    # Ray's raylet, GCS and replica workers descend from the generation service.
    spawned = {pid for c in stack.components for pid in descendants(c.pid)}
    assert spawned, "the generation service should have started Ray processes"
    result = copilot(env, "down")
    assert result.returncode == 0
    everything = {c.pid for c in stack.components} | spawned
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(pid_alive(p) for p in everything):
        time.sleep(0.2)
    assert not [p for p in everything if pid_alive(p)], "no broker, service or Ray process may outlive `down`"
    again = copilot(env, "down")
    assert "not running" in again.stderr

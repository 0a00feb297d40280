"""``copilot up`` / ``down`` / ``status``: the whole stack as local processes on loopback."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic_settings import BaseSettings, SettingsConfigDict

from copilot import embedding
from copilot.broker import tansu_command, wait_for_port

REPO_ROOT = Path(__file__).resolve().parent.parent


class LauncherSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COPILOT_", extra="ignore")

    home: Path = Path(".copilot")
    kafka_port: int = 19092
    issuer_port: int = 18180
    # The monitor's review web page.
    review_port: int = 8080
    base_port: int = 50050
    realm: str = "copilot"
    audience: str = "copilot"
    users_file: Path = REPO_ROOT / "sample" / "users.json"
    model: str = "qwen2.5-coder-1.5b"
    engine_threads: int = 2
    log_format: str = "json"
    # Shared by every stack started from this checkout, so the embedding model is exported once and a split
    # answer model joined and verified once (1.1 GB), not once per stack home.
    model_cache_dir: Path = REPO_ROOT / ".cache" / "models"


@dataclass
class Component:
    name: str
    pid: int
    port: int
    kind: str  # "grpc", "http" or "tcp": how readiness is checked


@dataclass
class Stack:
    home: str
    issuer: str
    audience: str
    users_file: str
    components: list[Component]

    def endpoint(self, name: str) -> str:
        return next(f"127.0.0.1:{c.port}" for c in self.components if c.name == name)

    @staticmethod
    def state_path(home: Path) -> Path:
        return home / "run" / "stack.json"

    def save(self) -> None:
        path = self.state_path(Path(self.home))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, home: Path) -> Stack | None:
        path = cls.state_path(home)
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        raw["components"] = [Component(**c) for c in raw["components"]]
        return cls(**raw)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def grpc_serving(port: int, timeout_s: float = 1.0) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def component_ready(c: Component) -> bool:
    if c.kind == "grpc":
        return grpc_serving(c.port)
    return wait_for_port(c.port, 0.2)


def ray_temp_dir(home: Path) -> str:
    """Short (Ray's Unix socket paths must fit in 107 bytes) and unique per stack home."""
    return f"/tmp/copilot-ray-{hashlib.sha256(str(home).encode()).hexdigest()[:10]}"


def _spawn(name: str, argv: list[str], env: dict[str, str], home: Path) -> subprocess.Popen[bytes]:
    log_path = home / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT
        )


def _service_env(
    prefix: str, port: int, s: LauncherSettings, issuer: str, home: Path, store_key: str
) -> dict[str, str]:
    env = {
        f"{prefix}PORT": str(port),
        f"{prefix}LOG_FORMAT": s.log_format,
        f"{prefix}AUTH__ISSUER": issuer,
        f"{prefix}AUTH__AUDIENCE": s.audience,
        f"{prefix}KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{s.kafka_port}",
        f"{prefix}KAFKA__SPOOL_DIR": str(home / "spool"),
        f"{prefix}STORE__EMBEDDED_TARGET": f"127.0.0.1:{s.base_port}",
        f"{prefix}STORE__EMBEDDED_API_KEY": store_key,
        f"{prefix}EMBEDDING_CACHE_DIR": str(s.model_cache_dir),
    }
    return env


def up(
    s: LauncherSettings, progress: Callable[[str], None] = print, timeout_s: float = 600
) -> tuple[Stack, bool]:
    """Starts the stack unless it already runs; returns it and whether it was started now."""
    home = s.home.resolve()
    existing = Stack.load(home)
    if existing is not None and all(pid_alive(c.pid) for c in existing.components):
        return existing, False
    if existing is not None:
        down(home, progress)
    if not (s.model_cache_dir / embedding.onnx_file_name()).is_file():
        # Once per checkout, here rather than in four services racing to export at the same time.
        progress("exporting the embedding model to ONNX (first start only)")
        embedding.load_or_export_onnx(embedding.model_path(), s.model_cache_dir)
    issuer = f"http://127.0.0.1:{s.issuer_port}/realms/{s.realm}"
    # A fresh key per start: only this stack's services may write to or read from its store host.
    store_key = secrets.token_urlsafe(32)
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ports = {
        "store": s.base_port,
        "ingest": s.base_port + 1,
        "retrieval": s.base_port + 2,
        "generation": s.base_port + 3,
        "monitor": s.base_port + 4,
    }
    plan: list[tuple[str, list[str], dict[str, str], int, str]] = [
        ("kafka", tansu_command(s.kafka_port), {}, s.kafka_port, "tcp"),
        (
            "issuer",
            [
                sys.executable,
                "-m",
                "copilot.devissuer",
                str(s.users_file),
                str(home / "issuer" / "key.pem"),
                issuer,
                s.audience,
                str(s.issuer_port),
            ],
            {},
            s.issuer_port,
            "tcp",
        ),
        (
            "store",
            [sys.executable, "-m", "copilot.vectorstore.host"],
            {
                "COPILOT_STORE_PORT": str(ports["store"]),
                "COPILOT_STORE_PATH": str(home / "data" / "qdrant-edge"),
                "COPILOT_STORE_LOG_FORMAT": s.log_format,
                "COPILOT_STORE_API_KEY": store_key,
            },
            ports["store"],
            "grpc",
        ),
        (
            "ingest",
            [sys.executable, "-m", "services.ingest.server"],
            _service_env("COPILOT_INGEST_", ports["ingest"], s, issuer, home, store_key),
            ports["ingest"],
            "grpc",
        ),
        (
            "retrieval",
            [sys.executable, "-m", "services.retrieval.server"],
            _service_env("COPILOT_RETRIEVAL_", ports["retrieval"], s, issuer, home, store_key),
            ports["retrieval"],
            "grpc",
        ),
        (
            "monitor",
            [sys.executable, "-m", "services.monitor.server"],
            {
                **_service_env("COPILOT_MONITOR_", ports["monitor"], s, issuer, home, store_key),
                "COPILOT_MONITOR_DATABASE": str(home / "data" / "monitor.sqlite"),
                "COPILOT_MONITOR_HTTP_PORT": str(s.review_port),
                # The demo has one reviewer (ops); two labels per item would leave every flag open.
                "COPILOT_MONITOR_REVIEW__LABELS_PER_ITEM": "1",
            },
            ports["monitor"],
            "grpc",
        ),
        (
            "generation",
            [sys.executable, "-m", "services.generation.server"],
            {
                **_service_env("COPILOT_GENERATION_", ports["generation"], s, issuer, home, store_key),
                "COPILOT_GENERATION_RETRIEVAL_TARGET": f"127.0.0.1:{ports['retrieval']}",
                "COPILOT_GENERATION_MODEL": s.model,
                "COPILOT_GENERATION_ENGINE_THREADS": str(s.engine_threads),
                "COPILOT_GENERATION_MODEL_CACHE_DIR": str(s.model_cache_dir),
                "COPILOT_GENERATION_RAY_TEMP_DIR": ray_temp_dir(home),
            },
            ports["generation"],
            "grpc",
        ),
    ]
    stack = Stack(str(home), issuer, s.audience, str(s.users_file), [])
    deadline = time.monotonic() + timeout_s
    try:
        for name, argv, env, port, kind in plan:
            if wait_for_port(port, 0.05):
                raise RuntimeError(
                    f"port {port} for {name} is already in use; stop whatever holds it "
                    f"or set COPILOT_BASE_PORT / COPILOT_KAFKA_PORT / COPILOT_ISSUER_PORT"
                )
            proc = _spawn(name, argv, {**base_env, **env}, home)
            component = Component(name, proc.pid, port, kind)
            stack.components.append(component)
            stack.save()
            progress(f"starting {name:<10} on 127.0.0.1:{port}")
            while not component_ready(component):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with code {proc.returncode}; see {home}/logs/{name}.log"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} not ready after {timeout_s:.0f} s; see {home}/logs/{name}.log"
                    )
                time.sleep(0.2)
    except BaseException:
        down(home, lambda _msg: None)
        raise
    return stack, True


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def down(home: Path, progress: Callable[[str], None] = print, grace_s: float = 20.0) -> int:
    """Stops every component (newest first) and whatever they spawned; returns how many were running."""
    home = home.resolve()
    stack = Stack.load(home)
    if stack is None:
        return 0
    running = [c for c in reversed(stack.components) if pid_alive(c.pid)]
    for c in running:
        progress(f"stopping {c.name}")
        # Ray's raylet and workers leave the component's process group, so track them by parentage.
        spawned = descendants(c.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (pid_alive(c.pid) or any(pid_alive(p) for p in spawned)):
            time.sleep(0.1)
        for pid in [c.pid, *spawned]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    Stack.state_path(home).unlink(missing_ok=True)
    return len(running)

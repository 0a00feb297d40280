"""Every service's gRPC calls, counted and timed by the shared bootstrap and served for Prometheus.

A real store host process (``python -m copilot.vectorstore.host``) with
COPILOT_STORE_TELEMETRY__PROMETHEUS_PORT set answers real calls; the test scrapes its /metrics over HTTP
and reads the samples with prometheus_client's own parser.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from copilot import errors
from copilot.ports import free_port
from copilot.settings import TelemetrySettings
from copilot.store.v1 import store_pb2, store_pb2_grpc
from copilot.tracing import configure_metrics

REPO = Path(__file__).resolve().parents[2]
API_KEY = "metrics-test-key-0123456789"
STORE = "copilot.store.v1.StoreService"
Labels = tuple[tuple[str, str], ...]


def scrape(port: int) -> dict[str, dict[Labels, float]]:
    """Sample name -> labels -> value, from the /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def calls(samples: dict[str, dict[Labels, float]], name: str, method: str, status: str) -> float:
    """The value of NAME's one sample for METHOD and STATUS."""
    (value,) = [
        v
        for labels, v in samples.get(name, {}).items()
        if dict(labels).get("rpc_method") == method and dict(labels).get("rpc_grpc_status") == status
    ]
    return value


@pytest.fixture
def store_host(tmp_path: Path) -> Iterator[tuple[grpc.Channel, int]]:
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COPILOT_")},
        "COPILOT_STORE_PORT": str(grpc_port),
        "COPILOT_STORE_PATH": str(tmp_path / "edge"),
        "COPILOT_STORE_DIMENSION": "4",
        "COPILOT_STORE_API_KEY": API_KEY,
        "COPILOT_STORE_LOG_FORMAT": "text",
        "COPILOT_STORE_TELEMETRY__PROMETHEUS_PORT": str(metrics_port),
    }
    log = (tmp_path / "host.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "copilot.vectorstore.host"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "host.log").read_text()
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=STORE), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "host.log").read_text()
            time.sleep(0.2)
        yield channel, metrics_port
    finally:
        channel.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_calls_are_counted_and_timed_by_method_and_status(store_host: tuple[grpc.Channel, int]) -> None:
    channel, metrics_port = store_host
    stub = store_pb2_grpc.StoreServiceStub(channel)
    for _ in range(2):
        stub.CountChunks(
            store_pb2.CountChunksRequest(), metadata=[("authorization", f"Bearer {API_KEY}")], timeout=10
        )
    with pytest.raises(grpc.RpcError) as refused:
        stub.CountChunks(
            store_pb2.CountChunksRequest(), metadata=[("authorization", "Bearer wrong")], timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]

    samples = scrape(metrics_port)
    assert calls(samples, "copilot_rpc_server_calls_total", "CountChunks", "OK") == 2
    assert calls(samples, "copilot_rpc_server_calls_total", "CountChunks", "UNAUTHENTICATED") == 1
    # Every call also lands in the latency histogram, in milliseconds.
    histogram = "copilot_rpc_server_duration_milliseconds"
    assert calls(samples, f"{histogram}_count", "CountChunks", "OK") == 2
    assert calls(samples, f"{histogram}_count", "CountChunks", "UNAUTHENTICATED") == 1
    assert 0 < calls(samples, f"{histogram}_sum", "CountChunks", "OK") < 10_000
    (service,) = {dict(labels)["rpc_service"] for labels in samples["copilot_rpc_server_calls_total"]}
    assert service == STORE  # the readiness checks above are not counted
    # The process's own figures come with them.
    assert samples["process_resident_memory_bytes"]


def test_a_taken_metrics_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            errors.DependencyUnavailable, match=f"cannot serve Prometheus metrics on 127.0.0.1:{port}"
        ):
            configure_metrics("copilot-test", TelemetrySettings(prometheus_port=port))

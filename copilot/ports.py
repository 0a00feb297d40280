"""Free loopback ports for stacks started on demand: tests, benchmarks and evaluation variants."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now; the OS picks it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(count: int = 5, attempts: int = 100) -> int:
    """The first of ``count`` consecutive free ports: the launcher puts its services on base + i."""
    for _ in range(attempts):
        base = free_port()
        if base < 60000 and all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"found no {count} consecutive free ports in {attempts} tries")

"""``python -m tests.integration.metrics_store_host``: the embedded store host started the way every
service's ``server.py`` starts (settings, ``configure_metrics``, the shared gRPC bootstrap), so
test_rpc_metrics.py can scrape a real process. A process of its own because OpenTelemetry takes one meter
provider per process, and a test must not install one in the pytest process for every test after it."""

from __future__ import annotations

from copilot.auth import ApiKeyVerifier
from copilot.grpc_server import GrpcServer
from copilot.store.v1 import store_pb2_grpc
from copilot.tracing import configure_metrics
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.host import StoreHostSettings
from copilot.vectorstore.remote import StoreServicer


def main() -> None:
    settings = StoreHostSettings()
    configure_metrics("copilot-store", settings.telemetry)
    server = GrpcServer("store", settings, ApiKeyVerifier(settings.api_key))
    store = EdgeChunkStore(settings.path, settings.dimension)
    slot = server.add_service(
        store_pb2_grpc.add_StoreServiceServicer_to_server, "copilot.store.v1.StoreService"
    )
    server.start()
    slot.fill(StoreServicer(store))
    server.set_serving(True)
    server.run_until_signal(on_stop=store.close)


if __name__ == "__main__":
    main()

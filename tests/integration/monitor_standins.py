"""The monitor's gRPC service and review page on loopback over a given flag store, as the tests start them."""

from __future__ import annotations

from copilot.auth import TokenVerifier
from copilot.grpc_server import GrpcServer
from copilot.monitor.v1 import monitor_pb2_grpc
from copilot.settings import AuthSettings
from services.monitor.flagstore import FlagStore
from services.monitor.review import ReviewQueue
from services.monitor.service import MonitorServicer
from services.monitor.settings import MonitorSettings
from services.monitor.web.app import ReviewPage, WebServer


def serve_monitor(store: FlagStore, auth_settings: AuthSettings) -> GrpcServer:
    """MonitorService on a free port, serving; the caller stops it."""
    settings = MonitorSettings(port=0, auth=auth_settings)
    server = GrpcServer("monitor", settings, TokenVerifier(auth_settings))
    slot = server.add_service(
        monitor_pb2_grpc.add_MonitorServiceServicer_to_server, "copilot.monitor.v1.MonitorService"
    )
    server.start()
    slot.fill(MonitorServicer(store, settings.reviewer_role))
    server.set_serving(True)
    return server


def serve_review_page(store: FlagStore, auth_settings: AuthSettings) -> WebServer:
    """The review page on a free port, started; the caller stops it."""
    page = ReviewPage(
        ReviewQueue(store), TokenVerifier(auth_settings), "copilot-reviewer", "copilot-reviewer", resamples=50
    )
    web = WebServer(page.app, "127.0.0.1", 0)
    web.start()
    return web

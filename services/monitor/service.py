from __future__ import annotations

from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from copilot.auth import current_principal
from copilot.errors import InvalidInput, PermissionDenied
from copilot.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from services.monitor.flagstore import FlagStore

MAX_LIMIT = 1000


def _ts(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    def __init__(self, store: FlagStore, reviewer_role: str) -> None:
        self._store = store
        self._role = reviewer_role

    def _limit(self, limit: int) -> int:
        if not current_principal().has_role(self._role):
            raise PermissionDenied(f"reading monitor data needs the {self._role!r} role")
        if limit < 0 or limit > MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT} (0 for the default)")
        return limit or 50

    def ListFlags(
        self, request: monitor_pb2.ListFlagsRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.ListFlagsResponse:  # noqa: N802,E501
        flags = self._store.list_flags(self._limit(request.limit), request.interaction_id or None)
        return monitor_pb2.ListFlagsResponse(
            flags=[
                monitor_pb2.Flag(
                    flag_id=f.flag_id,
                    interaction_id=f.interaction_id,
                    detector=f.detector,
                    severity=f"SEVERITY_{f.severity.name}",
                    reason=f.reason,
                    evidence=list(f.evidence),
                    created_at=_ts(f.created_at),
                    user_id=f.user_id,
                    question=f.question,
                )
                for f in flags
            ]
        )

    def ListInteractions(
        self, request: monitor_pb2.ListInteractionsRequest, context: grpc.ServicerContext
    ) -> monitor_pb2.ListInteractionsResponse:  # noqa: N802,E501
        items = self._store.list_interactions(self._limit(request.limit))
        return monitor_pb2.ListInteractionsResponse(
            interactions=[
                monitor_pb2.InteractionSummary(
                    interaction_id=i.interaction_id,
                    user_id=i.user_id,
                    question=i.question,
                    answer=i.answer,
                    refused=i.refused,
                    flag_count=i.flag_count,
                    occurred_at=_ts(i.occurred_at),
                )
                for i in items
            ]
        )

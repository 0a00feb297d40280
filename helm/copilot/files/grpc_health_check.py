"""helm test: every copilot component answers grpc.health.v1 with SERVING.

Run by the test pod as ``python -c "<this file>" HOST:PORT ...``; exits non-zero naming each failure.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

failures = []
for target in sys.argv[1:]:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as error:
            status = f"{error.code().name}: {error.details()}"
    print(f"{target}: {status}", flush=True)
    if status != "SERVING":
        failures.append(target)
if failures:
    sys.exit(f"not serving: {', '.join(failures)}")

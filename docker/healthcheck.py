"""The image's HEALTHCHECK: probes whichever `vlarena` server the container runs.

    python /opt/vlarena/healthcheck.py [arena|execute|serve]

With no argument the server is the `vlarena` subcommand in PID 1's command line (VLA_HEALTHCHECK
overrides it). arena: GET /api/health on VLA_ARENA_PORT; execute: GET /health on VLA_EXEC_PORT;
serve: the standard gRPC health check (grpc.health.v1, SERVING only once the model is warm) on
VLA_GRPC_PORT, which needs no token. Any other command (train, eval, ...) is healthy while it
runs. Exit status 0: healthy, 1: not. It imports only the standard library and grpc, so it
starts fast. A server with TLS (VLA_TLS_CERT) needs its own check instead.
"""

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_S = 5.0
HTTP_CHECKS = {
    "arena": ("VLA_ARENA_PORT", 8000, "/api/health"),
    "execute": ("VLA_EXEC_PORT", 8001, "/health"),
}


def running_command() -> str | None:
    """The server subcommand PID 1 runs (`vlarena arena`, `tini -- vlarena serve`, ...)."""
    try:
        args = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    return next((arg for arg in args if arg in {*HTTP_CHECKS, "serve"}), None)


def http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT_S) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def grpc_serving(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else os.environ.get("VLA_HEALTHCHECK") or running_command()
    if command in HTTP_CHECKS:
        variable, default, path = HTTP_CHECKS[command]
        healthy = http_ok(int(os.environ.get(variable, default)), path)
    elif command == "serve":
        healthy = grpc_serving(int(os.environ.get("VLA_GRPC_PORT", 50051)))
    else:
        return 0
    if not healthy:
        print(f"vlarena {command} is not healthy", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

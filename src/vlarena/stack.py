"""The whole stack on loopback: inference server → execution service → arena backend + UI.

Each service runs in its own process (`python -m vlarena serve|execute|arena`), configured
through the environment as it would be in production; this module starts them in order, waits
until each answers, and stops them in reverse order.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from vlarena.errors import VLArenaError
from vlarena.serving.client import ClientOptions, VLAClient

LOOPBACK = "127.0.0.1"  # set explicitly: an inherited VLA_*_HOST never widens the stack
STOP_TIMEOUT_S = 30.0
PRIVATE = ("VLA_AUTH_TOKEN", "VLA_TLS_", "VLA_EXEC_INFERENCE_")  # tokens and TLS of a deployment


@dataclass(frozen=True)
class StackPorts:
    """Where each service listens (all on 127.0.0.1)."""

    inference: int = 50051  # gRPC
    metrics: int = 9090  # the inference server's Prometheus endpoint
    execution: int = 8001
    arena: int = 8000

    def __post_init__(self) -> None:
        ports = [self.inference, self.metrics, self.execution, self.arena]
        if len(set(ports)) != len(ports) or not all(0 < p < 65536 for p in ports):
            raise ValueError(f"ports must be distinct and in 1..65535, got {ports}")


def _environments(ports: StackPorts, database_url: str) -> list[tuple[str, dict[str, str]]]:
    """Each service's command and settings. The shipped checkpoints are served by the inference
    server; the execution service runs them through it, beside the expert and random baselines."""
    return [
        (
            "serve",
            {
                "VLA_HOST": LOOPBACK,
                "VLA_GRPC_PORT": str(ports.inference),
                "VLA_METRICS_PORT": str(ports.metrics),
            },
        ),
        (
            "execute",
            {
                "VLA_EXEC_HOST": LOOPBACK,
                "VLA_EXEC_PORT": str(ports.execution),
                "VLA_EXEC_SHIPPED_MODELS": "false",
                "VLA_EXEC_INFERENCE_TARGET": f"{LOOPBACK}:{ports.inference}",
            },
        ),
        (
            "arena",
            {
                "VLA_ARENA_HOST": LOOPBACK,
                "VLA_ARENA_PORT": str(ports.arena),
                "VLA_ARENA_DATABASE_URL": database_url,
                "VLA_SERVER_URL": f"http://{LOOPBACK}:{ports.execution}",
            },
        ),
    ]


def _inherited() -> dict[str, str]:
    """This environment minus what would make the loopback stack refuse its own calls."""
    return {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE)}


def _ready(command: str, ports: StackPorts) -> bool:
    try:
        if command == "serve":
            with VLAClient(ClientOptions(target=f"127.0.0.1:{ports.inference}")) as client:
                return bool(client.health().ready)
        url = {
            "execute": f"http://127.0.0.1:{ports.execution}/health",
            "arena": f"http://127.0.0.1:{ports.arena}/api/health",
        }[command]
        return httpx.get(url, timeout=1).status_code == 200
    except (VLArenaError, httpx.TransportError):
        return False


@dataclass(frozen=True)
class Running:
    """The started stack."""

    url: str  # the arena and its web UI
    processes: dict[str, "subprocess.Popen[bytes]"]

    def exited(self) -> str | None:
        """The first service that has stopped on its own, if any."""
        return next((name for name, p in self.processes.items() if p.poll() is not None), None)


@contextmanager
def stack(ports: StackPorts, database_url: str, timeout_s: float = 180) -> Iterator[Running]:
    """Start the services in order, each once the previous answers; stop them in reverse."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for command, env in _environments(ports, database_url):
            # Its own session: Ctrl-C reaches only us, and we stop the services in order.
            process = subprocess.Popen(
                [sys.executable, "-m", "vlarena", command],
                env=_inherited() | env,
                start_new_session=True,
            )
            processes[command] = process
            deadline = time.monotonic() + timeout_s
            while process.poll() is None and not _ready(command, ports):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"`vlarena {command}` not ready after {timeout_s:g} s")
                time.sleep(0.2)
            if process.poll() is not None:
                raise RuntimeError(f"`vlarena {command}` exited with {process.returncode}")
        yield Running(f"http://127.0.0.1:{ports.arena}/", processes)
    finally:
        _stop(list(processes.values()))


def _stop(processes: list["subprocess.Popen[bytes]"]) -> None:
    """Newest first: SIGTERM, wait, then kill. A second Ctrl-C cannot cut this short."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run(ports: StackPorts, database_url: str, announce: Callable[[str], None]) -> str | None:
    """Run the stack until Ctrl-C / SIGTERM (None) or until a service dies (its name)."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with stack(ports, database_url) as running:
            announce(running.url)
            while (dead := running.exited()) is None:
                time.sleep(0.5)
            return dead
    except KeyboardInterrupt:
        return None

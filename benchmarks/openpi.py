"""openpi's websocket protocol beside our gRPC: round-trip overhead over the policy's own time,
one robot and eight, against the same server process in the same run."""

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from rich.progress import Progress

from benchmarks.common import time_calls
from benchmarks.serving import serving
from vlarena.policies import PRESETS, FlowVLAPolicy
from vlarena.policies.synthetic import synthetic_observation
from vlarena.serving.client import ClientOptions, VLAClient
from vlarena.serving.openpi.profiles import get_profile
from vlarena.testing import free_port
from vlarena.types import Observation

ROBOTS = 8
Call = Callable[[], tuple[float, float, int]]  # one request: (round trip ms, policy ms, batch)


def _grpc_call(target: str, obs: Observation) -> Call:
    client = VLAClient(ClientOptions(target=target))

    def call() -> tuple[float, float, int]:
        chunk = client.predict(obs)
        return chunk.timing_ms["round_trip"], chunk.timing_ms["policy"], chunk.batch_size

    return call


def _websocket_call(url: str, obs: Observation) -> Call:
    policy = WebsocketClientPolicy(url)  # openpi's own client, unmodified
    message = get_profile("libero").encode(obs)

    def call() -> tuple[float, float, int]:
        started = time.perf_counter()
        reply = policy.infer(message)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        return elapsed_ms, reply["server_timing"]["infer_ms"], reply["batch_size"]

    return call


def _robots(make: Callable[[], Call], robots: int, calls: int) -> tuple[list[float], float, float]:
    """`robots` closed-loop clients, `calls` each: overheads (ms), requests/s and mean batch."""
    clients = [make() for _ in range(robots)]
    for call in clients:
        call()  # connect and warm
    overheads: list[float] = []
    batches: list[int] = []
    lock = threading.Lock()

    def robot(call: Call) -> None:
        for _ in range(calls):
            round_trip, policy, batch = call()
            with lock:
                overheads.append(round_trip - policy)
                batches.append(batch)

    started = time.perf_counter()
    with ThreadPoolExecutor(robots) as pool:
        list(pool.map(robot, clients))
    rate = robots * calls / (time.perf_counter() - started)
    return overheads, rate, statistics.mean(batches)


def run(samples: int, progress: Progress) -> str:
    """Markdown section for the websocket protocol."""
    task = progress.add_task("openpi protocol", total=4)
    policy = FlowVLAPolicy.create(PRESETS["small"], "vla-flow-small")
    obs = synthetic_observation(policy.info)
    bare = time_calls(lambda: policy.predict([obs], seeds=[0]), samples)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        policy.save(Path(tmp) / "small")
        port = free_port()
        env = {"VLA_BATCH_SIZE": "8", "VLA_MAX_QUEUE_DELAY_MS": "2", "VLA_TIMEOUT_MS": "60000"}
        with serving(Path(tmp) / "small", VLA_WEBSOCKET_PORT=str(port), **env) as target:
            url = f"ws://127.0.0.1:{port}/libero"
            for robots in (1, ROBOTS):
                calls = samples if robots == 1 else max(10, samples // 2)
                for name, make in (
                    ("gRPC (`VLAClient`, raw images)", lambda: _grpc_call(target, obs)),
                    (
                        "websocket (openpi-client, libero profile)",
                        lambda: _websocket_call(url, obs),
                    ),
                ):
                    overheads, rate, batch = _robots(make, robots, calls)
                    p50, p99 = np.percentile(overheads, [50, 99])
                    rows.append(
                        f"| {robots} | {name} | {len(overheads)} | {p50:.2f} | {p99:.2f} "
                        f"| {rate:.1f} | {batch:.1f} |"
                    )
                    progress.advance(task)
    return "\n".join(
        [
            "## openpi websocket protocol beside gRPC (one server process, loopback)",
            "",
            f"The `small` flow preset (2 cameras 96x96, 9 joints) behind one `vlarena serve` "
            f"listening on both protocols (`VLA_BATCH_SIZE=8`, 2 ms batching delay). Overhead "
            "= the client's round trip - the policy's own time for the batch it rode in (the "
            "server's `policy` timing, or `server_timing.infer_ms` over the websocket): "
            "encoding, transport, decoding, and with several robots the wait for the batch. "
            f"Bare `policy.predict` at batch 1, for scale: p50 {bare.p50:.2f} ms.",
            "",
            "| robots | protocol | n | overhead p50 ms | p99 ms | req/s | mean batch |",
            "|---:|---|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )

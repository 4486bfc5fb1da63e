"""Policy servers their owners run, entered as contestants: one over our gRPC, one over
openpi's websocket protocol, battle in the arena end to end; then one dies mid-turn."""

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.arena.conftest import StartArena, battle_pairs, login, wait_turns
from tests.arena.test_faults import turn, wait_status
from tests.loopback import serve_in_thread
from vlarena.execution.app import create_app as create_execution
from vlarena.execution.settings import ExecutionSettings, RemoteModel
from vlarena.testing import free_port


class PolicyServer:
    """`vlarena serve` in its own process (a policy owner's server), killable."""

    def __init__(self, log: Path, **env: str) -> None:
        self.grpc_port, self.websocket_port = free_port(), free_port()
        self.log = log
        env = os.environ | {
            "VLA_GRPC_PORT": str(self.grpc_port),
            "VLA_WEBSOCKET_PORT": str(self.websocket_port),
            "VLA_METRICS_ENABLED": "false",
            **env,
        }
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vlarena", "serve"], env=env, stderr=out
            )
        deadline = time.monotonic() + 90
        while "warm after" not in log.read_text():
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the policy server did not warm up"
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def policy_servers(tmp_path: Path) -> Iterator[tuple[PolicyServer, PolicyServer]]:
    servers = (
        PolicyServer(tmp_path / "grpc.log", VLA_MODEL_PATH="vla-flow:tiny", VLA_AUTH_TOKEN="tok"),
        PolicyServer(tmp_path / "ws.log", VLA_MODEL_PATH="vla-ar:tiny"),
    )
    yield servers
    for server in servers:
        server.kill()


@pytest.mark.slow
def test_remote_contestants_battle_and_one_dies_mid_turn(
    tmp_path: Path, policy_servers: tuple[PolicyServer, PolicyServer]
) -> None:
    grpc_owner, openpi_owner = policy_servers
    contestants = [
        RemoteModel(
            name="owner-grpc",
            url=f"grpc://127.0.0.1:{grpc_owner.grpc_port}/vla-flow-tiny-random",
            token="tok",
        ),
        RemoteModel(
            name="owner-openpi",
            url=f"ws://127.0.0.1:{openpi_owner.websocket_port}/libero",
            profile="libero",
            timeout_s=5,
        ),
    ]
    settings = ExecutionSettings(
        port=0, shipped_models=False, presets="", remote_models=contestants, horizon=1
    )
    execution = serve_in_thread(create_execution(settings))
    database = f"sqlite+aiosqlite:///{tmp_path / 'arena.db'}"
    arena = StartArena(database, execution.url)
    try:
        listed = httpx.get(f"{execution.url}/models").json()
        assert {m["model_id"] for m in listed} >= {"owner-grpc", "owner-openpi"}
        client = arena(
            models="owner-grpc,owner-openpi",
            max_steps=150,
            retry_attempts=2,
            breaker_failures=2,
            breaker_reset_s=1.0,
        )
        auth = login(client)
        battle_id = client.post("/api/battles", json={}, headers=auth).json()["battle_id"]
        assert turn(client, battle_id, auth, "t1").status_code == 202
        battle = wait_turns(client, battle_id)
        assert battle["status"] == "ready", battle
        assert set(battle_pairs(database)[0]) == {"owner-grpc", "owner-openpi"}

        assert turn(client, battle_id, auth, "t2").status_code == 202
        wait_status(client, battle_id, "running")
        time.sleep(0.3)
        openpi_owner.kill()  # mid-episode: its connection drops
        started = time.monotonic()
        battle = wait_turns(client, battle_id, timeout_s=60)
        assert battle["status"] == "failed"
        error = battle["turns"][1]["error"]
        assert error["error"] in ("execution_unavailable", "execution_failed"), error
        assert not re.search(r"owner-(grpc|openpi)|127\.0\.0\.1", error["detail"])  # anonymous
        assert time.monotonic() - started < 30  # failed cleanly, not after a hang
    finally:
        arena.stop_all()
        execution.stop()

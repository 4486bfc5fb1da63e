"""The deployed shape: LeRobot checkpoints served from the LeRobot environment's `vlarena serve`,
simulated by this environment's execution service, and reached by openpi's own client."""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from tests.execution.conftest import StartService, body
from vlarena.errors import ConfigError
from vlarena.policies.specs import resolve_policy
from vlarena.testing import ServiceProcess, free_port

LEROBOT_PYTHON = os.environ.get("VLA_LEROBOT_PYTHON", "")  # `make test` sets it
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not LEROBOT_PYTHON, reason="VLA_LEROBOT_PYTHON unset (make install-lerobot; make test)"
    ),
]
BUILD = """
import sys
from pathlib import Path
from vlarena.policies.lerobot import tiny
tiny.build("smolvla", Path(sys.argv[1]) / "smolvla")
tiny.build("act", Path(sys.argv[1]) / "act", cameras=("top", "hand"))
"""


@pytest.fixture(scope="module")
def lerobot_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """`vlarena serve` in the LeRobot environment: a SmolVLA and an ACT with its own camera
    names, mapped to ours."""
    root = tmp_path_factory.mktemp("lerobot")
    subprocess.run(
        [LEROBOT_PYTHON, "-c", BUILD, str(root)], check=True
    )  # pytest shows its output on failure
    websocket = free_port()
    server = ServiceProcess(
        "serve",
        websocket,
        "/healthz",  # 200 once every model is warm
        python=LEROBOT_PYTHON,
        VLA_MODEL_PATH=str(root / "smolvla"),
        VLA_EXTRA_MODEL_PATHS=f"lerobot:{root / 'act'}#front=top&wrist=hand&name=act-tiny",
        VLA_GRPC_PORT=str(free_port()),
        VLA_WEBSOCKET_PORT=str(websocket),
        VLA_METRICS_PORT="0",
        VLA_BATCH_SIZE="4",
    )
    server.start()
    yield server
    server.stop()


def grpc_target(server: ServiceProcess) -> str:
    return f"127.0.0.1:{server.env['VLA_GRPC_PORT']}"


def test_the_execution_service_simulates_them(
    lerobot_server: ServiceProcess, start_service: StartService
) -> None:
    client = start_service(inference_target=grpc_target(lerobot_server), model_paths="")
    models = {m["model_id"]: m for m in client.get("/models").json()}
    assert {"smolvla", "act-tiny"} <= set(models)
    for model in ("smolvla", "act-tiny"):
        reply = client.post("/execute", json=body(model_id=model, max_steps=5))
        assert reply.status_code == 200, reply.text
        assert reply.json()["model_id"] == model
        assert len(reply.json()["actions"]) == 5
    card = client.get("/models/act-tiny/card").json()
    assert card["family"] == "lerobot-act"


def test_openpi_clients_reach_them(lerobot_server: ServiceProcess) -> None:
    policy = WebsocketClientPolicy("127.0.0.1", lerobot_server.port)
    info = policy.get_server_metadata()["model_info"]
    assert (info["name"], info["policy_type"]) == ("smolvla", "lerobot-smolvla")
    rng = np.random.default_rng(0)
    reply = policy.infer(
        {
            "images": {c: rng.integers(0, 256, (64, 64, 3), np.uint8) for c in ("front", "wrist")},
            "joint_positions": np.zeros(9, np.float32),
            "joint_velocities": np.zeros(9, np.float32),
            "language_instruction": "touch the red cube",
        }
    )
    assert reply["actions"].shape == (10, 8)
    assert reply["model_id"] == "smolvla"


def test_a_lerobot_path_is_refused_here_with_the_way_to_serve_it(
    tmp_path: Path, start_service: StartService
) -> None:
    subprocess.run([LEROBOT_PYTHON, "-c", BUILD, str(tmp_path)], check=True)
    with pytest.raises(ConfigError, match="make install-lerobot"):
        resolve_policy(str(tmp_path / "smolvla"))
    client = start_service(model_paths=str(tmp_path / "smolvla"))
    listed = {m["model_id"]: m["kind"] for m in client.get("/models").json()}
    assert listed["smolvla"] == "lerobot"
    reply = client.post("/execute", json=body(model_id="smolvla", max_steps=2))
    assert reply.status_code == 500, reply.text
    assert reply.json()["error"] == "model_loading_failed"
    assert "make install-lerobot" in reply.json()["detail"]

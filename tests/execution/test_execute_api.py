"""The execution service over real HTTP: /execute, errors, saturation, scenes, async episodes."""

import asyncio
import hashlib
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.execution.conftest import StartService
from tests.serving.conftest import StartServer
from vlarena.policies import PRESETS, FlowVLAPolicy
from vlarena.testing import free_port


def body(**overrides: Any) -> dict[str, Any]:
    request = {"model_id": "scripted-expert", "robot_id": "franka", "scene_id": "table",
               "instruction": "pick up the red cube", "seed": 3, "max_steps": 60}  # fmt: skip
    return request | overrides


def test_execute_with_the_scripted_expert(start_service: StartService) -> None:
    client = start_service()
    reply = client.post("/execute", json=body())
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["success"] is True
    assert data["metadata"]["early_termination"] is True
    assert len(data["actions"]) == len(data["states"]) == data["metadata"]["num_steps"]
    assert len(data["actions"][0]) == 8
    assert set(data["states"][0]) == {"qpos", "qvel", "time", "inference_ms", "scene_qpos"}
    assert len(data["states"][0]["scene_qpos"]) == len(data["initial_qpos"]) == 30
    assert data["metadata"]["max_steps"] == 60
    assert data["task"] == {"kind": "lift", "color": "red", "other": None, "side": None}
    assert data["seed"] == 3
    assert data["duration_ms"] > 0


def test_same_seed_same_start_for_two_models(start_service: StartService) -> None:
    client = start_service()
    expert = client.post("/execute", json=body(max_steps=5)).json()
    native = client.post("/execute", json=body(model_id="flow-tiny", max_steps=5)).json()
    assert expert["initial_qpos"] == native["initial_qpos"]
    assert native["model_id"] == "flow-tiny"
    assert native["timing"]["inference_ms"] > 0
    assert native["success"] is False
    default = client.post("/execute", json=body(max_steps=None, instruction="wave")).json()
    assert default["metadata"]["num_steps"] == 50  # the ADR's default budget
    assert default["success"] is None


@pytest.mark.parametrize(
    ("overrides", "status", "error", "detail"),
    [
        ({"model_id": "octo-small"}, 404, "not_found", "unknown model 'octo-small'; valid: arm7"),
        ({"robot_id": "ur5"}, 404, "not_found", "unknown robot 'ur5'; valid: franka"),
        ({"scene_id": "kitchen"}, 404, "not_found", "unknown scene 'kitchen'; valid: bin, table"),
        ({"instruction": ""}, 422, "invalid_request", "instruction"),
        ({"max_steps": 10_000}, 422, "invalid_request", "exceeds the cap of 200"),
        ({"max_steps": 0}, 422, "invalid_request", "max_steps"),
        ({"seed": -1}, 422, "invalid_request", "seed"),
        ({"instruction": "x" * 501}, 422, "invalid_request", "instruction"),
        ({"seed": True}, 422, "invalid_request", "seed"),
        ({"instruction": "put the red cube in the bin"}, 422, "invalid_request", "needs a bin"),
        ({"model_id": "arm7"}, 422, "invalid_request", "action_dim 7 and state_dim 9"),
    ],
)
def test_errors_have_a_json_body(start_service: StartService, arm7_checkpoint: Path,
                                 overrides: dict[str, Any], status: int, error: str,
                                 detail: str) -> None:  # fmt: skip
    client = start_service(model_paths=str(arm7_checkpoint))
    reply = client.post("/execute", json=body(**overrides))
    assert reply.status_code == status
    assert reply.json()["error"] == error
    assert detail in reply.json()["detail"]


@pytest.fixture(scope="module")
def arm7_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model for a 7-dof arm: it cannot drive the Panda's 8-dim action."""
    path = tmp_path_factory.mktemp("arm7") / "arm7"
    FlowVLAPolicy.create(replace(PRESETS["tiny"], action_dim=7), "arm7").save(path)
    return path


def test_malformed_json_and_missing_fields(start_service: StartService) -> None:
    client = start_service()
    wrong_method = client.get("/execute")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"
    assert client.get("/nowhere").json()["error"] == "not_found"
    reply = client.post(
        "/execute", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 422
    assert reply.json()["error"] == "invalid_request"
    reply = client.post("/execute", json={"model_id": "scripted-expert"})
    assert reply.status_code == 422
    assert "robot_id: Field required" in reply.json()["detail"]


def test_model_loading_failure_is_a_500(start_service: StartService, tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    client = start_service(model_paths=str(tmp_path / "broken"))
    reply = client.post("/execute", json=body(model_id="broken"))
    assert reply.status_code == 500
    assert reply.json()["error"] == "model_loading_failed"
    assert "metadata.json" in reply.json()["detail"]
    assert client.post("/execute", json=body(max_steps=3)).status_code == 200  # still serving


def test_saturation_answers_503(start_service: StartService) -> None:
    client = start_service(max_concurrent_episodes=1, max_waiting_episodes=0)
    long = body(instruction="wave for a long time", max_steps=200)
    results: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: results.append(client.post("/execute", json=long)))
    worker.start()
    for _ in range(500):
        if client.get("/health").json()["episodes_admitted"] == 1:
            break
        time.sleep(0.01)
    reply = client.post("/execute", json=body())
    assert reply.status_code == 503
    assert reply.json()["error"] == "saturated"
    worker.join()
    assert results[0].status_code == 200


def test_health_models_and_scenes(start_service: StartService) -> None:
    client = start_service(presets="vla-ar:tiny")
    assert client.get("/health").json()["status"] == "ok"
    models = {m["model_id"]: m["kind"] for m in client.get("/models").json()}
    assert models == {"scripted-expert": "expert", "flow-tiny": "checkpoint",
                      "vla-ar-tiny-random": "preset"}  # fmt: skip
    shipped = start_service(shipped_models=True, presets="")
    listed = {m["model_id"]: m["kind"] for m in shipped.get("/models").json()}
    assert listed["vla-flow-small"] == listed["vla-ar-small"] == "checkpoint"
    scenes = client.get("/scenes").json()
    assert {s["scene_id"] for s in scenes} == {"table", "bin"}
    assert client.get("/openapi.json").json()["paths"]["/execute"]


def test_scene_manifest_and_files(start_service: StartService) -> None:
    client = start_service()
    manifest = client.get("/scenes/bin/manifest").json()
    assert manifest["root"] == "bin.xml"
    paths = {f["path"] for f in manifest["files"]}
    assert {"bin.xml", "franka/panda.xml", "franka/LICENSE", "franka/assets/hand.stl"} <= paths
    for entry in manifest["files"][:3]:
        content = client.get(entry["url"]).content
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
    assert client.get("/scenes/bin/files/../../../etc/passwd").status_code == 404
    assert client.get("/scenes/bin/files/franka/../../world.py").status_code == 404
    assert client.get("/scenes/moon/manifest").status_code == 404


def test_async_episode_with_progress(start_service: StartService) -> None:
    client = start_service()
    started = client.post("/episodes", json=body(instruction="put the red cube on the blue cube",
                                                  max_steps=120))  # fmt: skip
    assert started.status_code == 202
    url = started.json()["status_url"]
    seen_progress = False
    for _ in range(1000):
        status = client.get(url).json()
        seen_progress |= 0 < status["steps_done"] < 120 and status["status"] == "running"
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.01)
    assert status["status"] == "done", status
    assert status["result"]["success"] is True
    assert seen_progress
    assert client.get("/episodes/nope").status_code == 404


async def test_a_model_served_over_grpc(start_server: StartServer, start_service: StartService
                                        ) -> None:  # fmt: skip
    server = await start_server(batch_size=1)
    client = start_service(inference_target=f"127.0.0.1:{server.port}", model_paths="")
    models = await asyncio.to_thread(lambda: client.get("/models").json())
    assert {"model_id": "ar-tiny", "kind": "remote", "source": f"127.0.0.1:{server.port}"} in models
    reply = await asyncio.to_thread(
        lambda: client.post("/execute", json=body(model_id="ar-tiny", max_steps=6))
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["model_id"] == "ar-tiny"
    missing = await asyncio.to_thread(lambda: client.post("/execute", json=body(model_id="zz")))
    assert missing.status_code == 404


@pytest.mark.slow
def test_vlarena_execute_command(tmp_path: Path) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys

    env = os.environ | {"VLA_EXEC_PORT": "0", "VLA_EXEC_PRESETS": ""}
    process = subprocess.Popen([sys.executable, "-m", "vlarena", "execute"], env=env,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stderr is not None
        port = ""
        for line in process.stderr:
            if match := re.search(r"running on http://127\.0\.0\.1:(\d+)", line):
                port = match.group(1)
                break
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert health.json()["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=20)[1]
        assert "Application shutdown complete" in rest  # graceful; uvicorn re-raises SIGTERM
        assert process.returncode in (0, -signal.SIGTERM)
    finally:
        process.kill()


def test_an_unreachable_inference_server_is_503_not_502(start_service: StartService) -> None:
    client = start_service(inference_target=f"127.0.0.1:{free_port()}")
    reply = client.post("/execute", json=body(model_id="served-elsewhere", max_steps=2))
    assert reply.status_code == 503, reply.text  # retryable: the arena's breaker counts it
    assert reply.json()["error"] == "inference_unavailable"
    assert "UNAVAILABLE" in reply.json()["detail"]


def test_request_bodies_are_size_limited(start_service: StartService) -> None:
    client = start_service()
    reply = client.post("/execute", json=body(instruction="x" * 20_000))
    assert reply.status_code == 413
    assert reply.json()["error"] == "payload_too_large"

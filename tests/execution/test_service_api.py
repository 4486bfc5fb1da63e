"""The rest of the execution service over real HTTP: health, models, scenes, background
episodes, models of a gRPC inference server, and the `vlarena execute` command."""

import asyncio
import hashlib
import time
from pathlib import Path

import httpx
import pytest

from tests.execution.conftest import StartService, body
from tests.serving.conftest import StartServer
from vlarena.policies import DeviceConfig, FlowVLAPolicy
from vlarena.policies.checkpoint import CARD_FILE, read_metadata
from vlarena.policies.shipped import shipped_checkpoint
from vlarena.testing import free_port


def test_health_models_and_scenes(start_service: StartService) -> None:
    client = start_service(presets="vla-ar:tiny")
    assert client.get("/health").json()["status"] == "ok"
    models = {m["model_id"]: m["kind"] for m in client.get("/models").json()}
    assert models == {
        "scripted-expert": "expert",
        "flow-tiny": "checkpoint",
        "vla-ar-tiny-random": "preset",
    }
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
    started = client.post(
        "/episodes", json=body(instruction="put the red cube on the blue cube", max_steps=120)
    )
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


async def test_a_model_served_over_grpc(
    start_server: StartServer, start_service: StartService
) -> None:
    server = await start_server(batch_size=1)
    client = start_service(inference_target=f"127.0.0.1:{server.port}", model_paths="")
    models = await asyncio.to_thread(lambda: client.get("/models").json())
    assert {"model_id": "ar-tiny", "kind": "remote", "source": f"127.0.0.1:{server.port}"} in models
    reply = await asyncio.to_thread(
        lambda: client.post("/execute", json=body(model_id="ar-tiny", max_steps=6))
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["model_id"] == "ar-tiny"
    for path in ("/execute", "/execute/check", "/episodes"):  # refused up front, no slot taken
        missing = await asyncio.to_thread(client.post, path, json=body(model_id="no-such-model"))
        assert missing.status_code == 404, (path, missing.text)
        assert missing.json()["error"] == "not_found"
        assert "ar-tiny" in missing.json()["detail"]  # the server's models are the valid ones
    assert client.get("/health").json()["episodes_admitted"] == 0


@pytest.mark.slow
def test_vlarena_execute_command(tmp_path: Path) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys

    env = os.environ | {"VLA_EXEC_PORT": "0", "VLA_EXEC_PRESETS": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "vlarena", "execute"], env=env, stderr=subprocess.PIPE, text=True
    )
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


def test_a_model_that_cannot_load_is_refused_up_front(
    start_service: StartService, tmp_path: Path
) -> None:
    (tmp_path / "broken").mkdir()
    client = start_service(model_paths=str(tmp_path / "broken"))
    for path in ("/execute/check", "/episodes"):
        reply = client.post(path, json=body(model_id="broken"))
        assert reply.status_code == 500
        assert reply.json()["error"] == "model_loading_failed"
        assert "metadata.json" in reply.json()["detail"]
    assert client.get("/health").json()["episodes_admitted"] == 0


async def test_a_failed_async_episode_keeps_its_error(
    start_server: StartServer, start_service: StartService
) -> None:
    server = await start_server(batch_size=1)
    client = start_service(inference_target=f"127.0.0.1:{server.port}", model_paths="")
    check = await asyncio.to_thread(
        lambda: client.post("/execute/check", json=body(model_id="ar-tiny"))
    )
    assert check.status_code == 200, check.text
    await server.stop(grace_s=0)  # gone after the check: the episode itself fails
    started = await asyncio.to_thread(
        lambda: client.post("/episodes", json=body(model_id="ar-tiny", max_steps=4))
    )
    assert started.status_code == 202, started.text
    url = started.json()["status_url"]
    for _ in range(500):
        status = await asyncio.to_thread(lambda: client.get(url).json())
        if status["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.01)
    assert status["status"] == "failed"
    assert status["error"]["error"] == "inference_unavailable"
    assert status["error"]["retry_after_s"] > 0
    assert status["result"] is None


def test_model_cards(start_service: StartService, tiny_checkpoint: Path) -> None:
    client = start_service(presets="vla-ar:tiny")
    card = client.get("/models/flow-tiny/card").json()
    assert card["kind"] == "checkpoint"
    assert card["family"] == "vla-flow"
    assert card["parameters"] > 1000
    assert card["evaluation"] == []  # no card file beside it
    preset = client.get("/models/vla-ar-tiny-random/card").json()
    assert (preset["kind"], preset["family"]) == ("preset", "vla-ar")
    assert "random weights" in preset["trained"]
    expert = client.get("/models/scripted-expert/card").json()
    assert (expert["kind"], expert["family"], expert["parameters"]) == ("expert", "scripted", None)
    missing = client.get("/models/nope/card")
    assert missing.status_code == 404
    assert "valid: " in missing.json()["detail"]

    shipped = start_service(shipped_models=True, presets="")
    flow = shipped.get("/models/vla-flow-small/card").json()
    assert flow["license"] == "Apache-2.0"
    assert flow["trained"]
    assert "50 episodes per task" in flow["evaluated"]
    tasks = {row["task"]: row for row in flow["evaluation"]}
    assert tasks["touch"]["episodes"] == 50
    assert (
        0
        <= tasks["touch"]["ci_low"]
        <= tasks["touch"]["successes"] / 50
        <= tasks["touch"]["ci_high"]
    )

    (tiny_checkpoint / CARD_FILE).write_text("[1, 2]")
    try:
        broken = start_service().get("/models/flow-tiny/card")
    finally:
        (tiny_checkpoint / CARD_FILE).unlink()
    assert broken.status_code == 500
    assert "must hold a JSON object" in broken.json()["detail"]


async def test_a_served_models_card_crosses_grpc(
    start_server: StartServer, start_service: StartService
) -> None:
    path = shipped_checkpoint("vla-flow-small")
    assert path is not None
    server = await start_server(batch_size=1, policies=[FlowVLAPolicy.load(path, DeviceConfig())])
    client = start_service(inference_target=f"127.0.0.1:{server.port}", model_paths="")
    card = (await asyncio.to_thread(client.get, "/models/vla-flow-small/card")).json()
    assert (card["kind"], card["family"], card["license"]) == ("remote", "vla-flow", "Apache-2.0")
    assert card["trained"] == read_metadata(path).description
    assert [row["task"] for row in card["evaluation"]][:2] == ["touch", "push_left"]

"""`POST /execute` and `POST /execute/check` over real HTTP: episodes, errors, saturation."""

import inspect
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.execution.conftest import StartService, body
from vlarena.policies import PRESETS, FlowVLAPolicy
from vlarena.sim import run_episode


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
    assert default["metadata"]["num_steps"] == 50  # the default budget
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
def test_errors_have_a_json_body(
    start_service: StartService,
    arm7_checkpoint: Path,
    overrides: dict[str, Any],
    status: int,
    error: str,
    detail: str,
) -> None:
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
    assert reply.json()["retry_after_s"] == 10.0
    assert reply.headers["retry-after"] == "10"
    worker.join()
    assert results[0].status_code == 200


def test_request_bodies_are_size_limited(start_service: StartService) -> None:
    client = start_service()
    reply = client.post("/execute", json=body(instruction="x" * 20_000))
    assert reply.status_code == 413
    assert reply.json()["error"] == "payload_too_large"


def test_check_validates_without_running(start_service: StartService) -> None:
    client = start_service()
    assert client.post("/execute/check", json=body()).json() == {"max_steps": 60}
    assert client.post("/execute/check", json=body(max_steps=None)).json() == {"max_steps": 50}
    reply = client.post("/execute/check", json=body(scene_id="kitchen"))
    assert reply.status_code == 404
    assert reply.json()["error"] == "not_found"
    assert client.get("/health").json()["episodes_admitted"] == 0


def test_check_refuses_a_model_that_does_not_fit(
    start_service: StartService, arm7_checkpoint: Path
) -> None:
    client = start_service(model_paths=str(arm7_checkpoint))
    for path in ("/execute/check", "/episodes"):
        reply = client.post(path, json=body(model_id="arm7"))
        assert reply.status_code == 422, reply.text
        assert "action_dim 7 and state_dim 9" in reply.json()["detail"]
    assert client.get("/health").json()["episodes_admitted"] == 0


@pytest.mark.parametrize(
    ("settings", "expected"), [({}, (1, True)), ({"horizon": 3, "ensemble": False}, (3, False))]
)
def test_episodes_run_as_the_settings_say(
    start_service: StartService,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, Any],
    expected: tuple[int, bool],
) -> None:
    seen: list[tuple[int, bool]] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(run_episode).bind(*args, **kwargs).arguments
        seen.append((bound["horizon"], bound["ensemble"]))
        return run_episode(*args, **kwargs)

    for name in ("VLA_EXEC_HORIZON", "VLA_EXEC_ENSEMBLE"):  # the defaults, not the environment's
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("vlarena.execution.episodes.run_episode", spy)
    client = start_service(**settings)
    reply = client.post("/execute", json=body(model_id="flow-tiny", max_steps=3))
    assert reply.status_code == 200, reply.text
    assert seen == [expected]

"""The episode use case without HTTP: one check into a valid request, the job store's bound,
and the response view of an episode."""

import asyncio
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from vlarena.errors import (
    InvalidObservationError,
    SaturatedError,
    UnavailableError,
    UnknownNameError,
)
from vlarena.execution.catalog import ModelCatalog, RemoteModels
from vlarena.execution.episodes import EpisodeService
from vlarena.execution.jobs import Job, JobStore
from vlarena.execution.schemas import ExecuteRequest
from vlarena.execution.settings import ExecutionSettings
from vlarena.execution.views import episode_view
from vlarena.policies import PRESETS, FlowVLAPolicy
from vlarena.sim import ExpertController, FrankaWorld, Task, run_episode
from vlarena.types import ModelInfo


def service(**overrides: Any) -> EpisodeService:
    values: dict[str, Any] = {"presets": "", "shipped_models": False}
    settings = ExecutionSettings(**(values | overrides))
    return EpisodeService(settings, ModelCatalog(settings))


def request(**overrides: object) -> ExecuteRequest:
    values = {"model_id": "scripted-expert", "robot_id": "franka", "scene_id": "bin"}
    return ExecuteRequest.model_validate(
        values | {"instruction": "put the red cube in the bin"} | overrides
    )


async def test_check_gives_the_parsed_task_and_the_budget() -> None:
    episodes = service(default_max_steps=40)
    valid = await episodes.check(request())
    assert valid.task == Task("bin", "red")
    assert valid.max_steps == 40
    assert (await episodes.check(request(max_steps=7))).max_steps == 7
    with pytest.raises(InvalidObservationError, match="needs a bin"):
        await episodes.check(request(scene_id="table"))
    with pytest.raises(UnknownNameError, match="unknown model 'nope'"):
        await episodes.check(request(model_id="nope"))
    episodes.close()


async def test_admission_is_bounded_by_running_and_waiting_slots() -> None:
    episodes = service(max_concurrent_episodes=1, max_waiting_episodes=1)
    await episodes.admit(request())
    await episodes.admit(request())
    with pytest.raises(SaturatedError) as raised:
        await episodes.admit(request(model_id="nope"))  # refused before the model is asked
    assert raised.value.retry_after_s == 10.0
    assert episodes.admitted == 2
    episodes.close()


async def test_a_refused_request_gives_its_slot_back() -> None:
    episodes = service(max_concurrent_episodes=1, max_waiting_episodes=0)
    with pytest.raises(UnknownNameError):
        await episodes.admit(request(model_id="nope"))
    assert episodes.admitted == 0
    episodes.close()


class FakeServer:
    """An inference server's answers to HealthCheck and GetModelInfo, counted."""

    def __init__(self, served: dict[str, ModelInfo]) -> None:
        self.served = served
        self.up = True
        self.calls = 0

    def health(self) -> SimpleNamespace:
        self.calls += 1
        if not self.up:
            raise UnavailableError("UNAVAILABLE: connection refused")
        return SimpleNamespace(models=sorted(self.served))

    def model_info(self, model: str = "") -> ModelInfo:
        self.calls += 1
        if not self.up:
            raise UnavailableError("UNAVAILABLE: connection refused")
        if model not in self.served:
            raise UnknownNameError("model", model, self.served)
        return self.served[model]


def test_the_remote_model_list_and_contracts_are_cached_for_the_ttl() -> None:
    info = FlowVLAPolicy.create(PRESETS["tiny"], "far").info
    server, now = FakeServer({"far": info}), [0.0]
    remote = RemoteModels(server, ttl_s=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert remote.names() == ("far",)
    assert remote.info("far") == info
    assert (remote.names(), remote.info("far"), server.calls) == (("far",), info, 2)
    server.up = False
    now[0] = 6.0  # stale: asked again, and the server is gone
    with pytest.raises(UnavailableError):
        remote.names()
    server.up = True
    with pytest.raises(UnavailableError):  # a failure is remembered for a moment...
        remote.names()
    now[0] = 7.5  # ...then asked again
    server.served = {}
    assert remote.names() == ()
    with pytest.raises(UnknownNameError):
        remote.info("far")


def test_a_model_served_since_the_list_was_fetched_is_found_at_once() -> None:
    info = FlowVLAPolicy.create(PRESETS["tiny"], "new").info
    server, now = FakeServer({}), [0.0]
    catalog = ModelCatalog(ExecutionSettings(presets="", shipped_models=False))
    catalog._remote = RemoteModels(server, ttl_s=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError):
        catalog.info("new")
    server.served = {"new": info}
    now[0] = 1.0  # well inside the list's TTL
    assert catalog.info("new") == info


def test_unknown_remote_models_and_models_that_do_not_fit_are_refused_by_check() -> None:
    arm7 = FlowVLAPolicy.create(replace(PRESETS["tiny"], action_dim=7), "arm7").info
    episodes = service(inference_target="127.0.0.1:1")
    server = FakeServer({"arm7": arm7})
    episodes.catalog._remote = RemoteModels(server, ttl_s=5.0)  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match=r"unknown model 'no-such-model'.*arm7"):
        asyncio.run(episodes.check(request(model_id="no-such-model")))
    with pytest.raises(InvalidObservationError, match="action_dim 7"):
        asyncio.run(episodes.check(request(model_id="arm7")))
    server.up = False
    episodes.catalog._remote = RemoteModels(server, ttl_s=5.0)  # type: ignore[arg-type]
    with pytest.raises(UnavailableError):  # unreachable: retry later, not "unknown"
        asyncio.run(episodes.check(request(model_id="no-such-model")))
    episodes.close()


def test_the_job_store_keeps_active_jobs_and_the_newest_finished() -> None:
    store = JobStore(capacity=2)
    running, done = Job(5, status="running"), Job(5, status="done")
    first = store.add(running)
    second = store.add(done)
    third = store.add(Job(5, status="failed"))
    assert store.get(first) is running  # over capacity, but the oldest is still running
    running.status = "done"
    fourth = store.add(Job(5))
    assert {store.get(third).status, store.get(fourth).status} == {"failed", "queued"}
    for gone in (first, second):
        with pytest.raises(UnknownNameError):
            store.get(gone)


def test_the_view_of_an_episode() -> None:
    episode = run_episode(FrankaWorld("table"), ExpertController(), "pick up the red cube", 3, 4)
    view = episode_view(episode).model_dump()
    step = episode.steps[-1]
    assert view["actions"] == [s.action for s in episode.steps]
    assert view["states"][-1] == {
        "qpos": step.qpos,
        "qvel": step.qvel,
        "time": step.time_s,
        "inference_ms": step.inference_ms,
        "scene_qpos": step.scene_qpos,
    }
    assert view["metadata"] == {"num_steps": 4, "max_steps": 4, "early_termination": False}
    assert view["task"] == {"kind": "lift", "color": "red", "other": None, "side": None}
    assert view["timing"] == {"inference_ms": 0.0, "simulation_ms": episode.duration_ms}
    same = (
        "duration_ms",
        "success",
        "seed",
        "model_id",
        "robot_id",
        "scene_id",
        "instruction",
        "mujoco_version",
        "initial_qpos",
    )
    assert {name: view[name] for name in same} == {name: getattr(episode, name) for name in same}

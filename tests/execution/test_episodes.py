"""The episode use case without HTTP: one check into a valid request, the job store's bound,
and the response view of an episode."""

from typing import Any

import pytest

from vlarena.errors import InvalidObservationError, SaturatedError, UnknownNameError
from vlarena.execution.catalog import ModelCatalog
from vlarena.execution.episodes import EpisodeService
from vlarena.execution.jobs import Job, JobStore
from vlarena.execution.schemas import ExecuteRequest
from vlarena.execution.settings import ExecutionSettings
from vlarena.execution.views import episode_view
from vlarena.sim import ExpertController, FrankaWorld, Task, run_episode


def service(**overrides: Any) -> EpisodeService:
    values: dict[str, Any] = {"presets": "", "shipped_models": False}
    settings = ExecutionSettings(**(values | overrides))
    return EpisodeService(settings, ModelCatalog(settings))


def request(**overrides: object) -> ExecuteRequest:
    values = {"model_id": "scripted-expert", "robot_id": "franka", "scene_id": "bin"}
    return ExecuteRequest.model_validate(
        values | {"instruction": "put the red cube in the bin"} | overrides
    )


def test_check_gives_the_parsed_task_and_the_budget() -> None:
    episodes = service(default_max_steps=40)
    valid = episodes.check(request())
    assert valid.task == Task("bin", "red")
    assert valid.max_steps == 40
    assert episodes.check(request(max_steps=7)).max_steps == 7
    with pytest.raises(InvalidObservationError, match="needs a bin"):
        episodes.check(request(scene_id="table"))
    with pytest.raises(UnknownNameError, match="unknown model 'nope'"):
        episodes.check(request(model_id="nope"))
    episodes.close()


def test_admission_is_bounded_by_running_and_waiting_slots() -> None:
    episodes = service(max_concurrent_episodes=1, max_waiting_episodes=1)
    valid = episodes.check(request())
    episodes.admit(valid)
    episodes.admit(valid)
    with pytest.raises(SaturatedError) as raised:
        episodes.admit(valid)
    assert raised.value.retry_after_s == 10.0
    assert episodes.admitted == 2
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

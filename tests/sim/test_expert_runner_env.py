"""Scripted expert, episode runner (expert, in-process policy, policy over gRPC), gym env."""

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tests.serving.conftest import StartServer
from vlarena.errors import ConfigError, InvalidObservationError, PolicyOutputError
from vlarena.policies import PRESETS, FlowVLAPolicy, Policy, Seeds
from vlarena.runtime import DualRateConfig, DualRateRuntime
from vlarena.serving.client import ClientOptions, RemotePolicy, VLAClient
from vlarena.sim import (
    Controller,
    DualRateController,
    Episode,
    ExpertController,
    FrankaTableEnv,
    FrankaWorld,
    PolicyController,
    run_episode,
)
from vlarena.sim.controllers import Produce
from vlarena.sim.tasks import EXAMPLES, Task
from vlarena.sim.world import COLORS
from vlarena.types import ActionChunk, ModelInfo, Observation

PAIRS = list(itertools.permutations(COLORS, 2))
SEEDS = range(6)  # docs/benchmarks.md reports 100 seeds per task


@pytest.mark.slow
@pytest.mark.parametrize(("scene", "template"), EXAMPLES)
def test_expert_solves_every_task(scene: str, template: str) -> None:
    world = FrankaWorld(scene)
    for seed in SEEDS:
        a, b = PAIRS[seed % len(PAIRS)]
        episode = run_episode(world, ExpertController(), template.format(a=a, b=b), seed, 150)
        assert episode.success, (template, seed)
        assert episode.early_termination


class Answering(Policy):
    """A tiny-preset policy whose answers come from `answer` (one observation at a time)."""

    def __init__(self, answer: Callable[[Observation], ActionChunk]) -> None:
        self._info = FlowVLAPolicy.create(PRESETS["tiny"], "tiny").info
        self._answer = answer

    @property
    def info(self) -> ModelInfo:
        return self._info

    def predict(
        self, observations: Sequence[Observation], seeds: Seeds = None
    ) -> list[ActionChunk]:
        return [self._answer(obs) for obs in observations]


def test_episode_records_everything() -> None:
    world = FrankaWorld("table")
    episode = run_episode(world, ExpertController(), "pick up the red cube", seed=4, max_steps=60)
    assert episode.success
    assert episode.model_id == "scripted-expert"
    assert 10 < len(episode.steps) < 60
    step = episode.steps[-1]
    assert len(step.action) == 8
    assert len(step.qpos) == 9
    assert len(step.qvel) == 9
    assert step.time_s == pytest.approx(0.1 * len(episode.steps))
    assert episode.mujoco_version
    assert episode.duration_ms > 0
    assert episode.task.kind == "lift"


def test_free_form_instruction_runs_with_unknown_success() -> None:
    episode = run_episode(FrankaWorld("table"), ExpertController(), "wave hello", 0, max_steps=5)
    assert episode.success is None
    assert len(episode.steps) == 5


def test_same_seed_same_start_for_any_controller() -> None:
    world = FrankaWorld("table")
    policy = FlowVLAPolicy.create(PRESETS["tiny"], "tiny")
    controller = PolicyController(policy)
    a = run_episode(world, ExpertController(), "touch the red cube", 11, max_steps=3)
    b = run_episode(world, controller, "touch the red cube", 11, max_steps=3)
    assert a.initial_qpos == b.initial_qpos


async def test_policy_episode_in_process_and_over_grpc_match(start_server: StartServer) -> None:
    server = await start_server(batch_size=1)
    policy = server.models["flow-tiny"].policy
    local = PolicyController(policy)

    def remote_episode() -> Episode:
        with VLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as client:
            remote = PolicyController(RemotePolicy(client))
            return run_episode(FrankaWorld("table"), remote, "pick up the red cube", 5, 12)

    over_grpc = await asyncio.to_thread(remote_episode)
    in_process = run_episode(FrankaWorld("table"), local, "pick up the red cube", 5, 12)
    assert len(in_process.steps) == len(over_grpc.steps) == 12
    for x, y in zip(in_process.steps, over_grpc.steps, strict=True):
        np.testing.assert_allclose(x.action, y.action, atol=1e-4)
        np.testing.assert_allclose(x.qpos, y.qpos, atol=1e-4)
    assert over_grpc.inference_ms > 0


def test_policy_needing_a_missing_camera_is_refused() -> None:
    cfg = PRESETS["tiny"]
    config = replace(cfg, backbone=replace(cfg.backbone, camera_names=("front", "top")))
    policy = FlowVLAPolicy.create(config, "top-cam")
    controller = PolicyController(policy)
    with pytest.raises(InvalidObservationError, match=r"needs cameras \['top'\]"):
        run_episode(FrankaWorld("table"), controller, "touch the red cube", 0)


@pytest.mark.parametrize("bad", [np.zeros((0, 8)), np.zeros((4, 7)), np.full((4, 8), np.nan)])
def test_unusable_policy_output_is_refused(bad: np.ndarray) -> None:
    controller = PolicyController(Answering(lambda _: ActionChunk(bad.astype(np.float32), "x")))
    with pytest.raises(PolicyOutputError, match="returned actions of shape"):
        run_episode(FrankaWorld("table"), controller, "touch the red cube", 0)


def test_bin_task_needs_a_bin_scene() -> None:
    with pytest.raises(InvalidObservationError, match="needs a bin"):
        run_episode(FrankaWorld("table"), ExpertController(), "put the red cube in the bin", 0)


def test_gym_env() -> None:
    env = FrankaTableEnv(instruction="touch the blue cube", image_size=(32, 32), max_steps=3)
    obs, info = env.reset(seed=2)
    assert env.observation_space.contains(obs)
    assert info["task"].kind == "touch"
    total = 0.0
    for _ in range(3):
        obs, reward, terminated, truncated, _step_info = env.step(env.action_space.sample())
        total += reward
    assert truncated or terminated
    assert env.render().shape == (240, 320, 3)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.slow
@pytest.mark.parametrize("blend", ["latest", "rtc"])
def test_realtime_synchronous_policy_lets_the_world_move_on(blend: str) -> None:
    policy = FlowVLAPolicy.create(PRESETS["tiny"], "slow")

    def slow_predict(obs: Observation) -> ActionChunk:
        time.sleep(0.25)  # 2.5 control periods of thinking
        return policy.predict([obs], [0])[0]

    controller = PolicyController(Answering(slow_predict))
    started = time.perf_counter()
    episode = run_episode(
        FrankaWorld("table"), controller, "wave", 0, max_steps=10, realtime=True, blend=blend
    )
    assert time.perf_counter() - started >= 0.9  # paced to the wall clock
    assert len(episode.steps) == 10
    held = [s for s in episode.steps if s.held]
    assert len(held) >= 3  # periods spent holding while the first chunk was made
    fresh = [s.inference_ms for s in episode.steps if s.inference_ms > 0]
    assert fresh  # each new chunk's measured latency, on the step it arrived
    assert min(fresh) >= 250


class Numbered(Controller):
    """Chunks of 8 whose action j of call c is the start pose plus 1e-3·(8c + j) (joints)."""

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        self.pose = np.concatenate([world.qpos[:7], [0.5]]).astype(np.float32)
        self.calls: list[int] = []
        return "numbered"

    def prepare(self, world: FrankaWorld, instruction: str, step: int) -> Produce:
        call = len(self.calls)
        self.calls.append(step)
        offsets = 1e-3 * (8 * call + np.arange(8, dtype=np.float32))
        actions = np.tile(self.pose, (8, 1))
        actions[:, :7] += offsets[:, None]
        return lambda: ActionChunk(actions, "numbered")


@pytest.mark.parametrize("horizon", [1, 3])
def test_ensembled_episode_runs_the_mean_of_the_chunks_predicting_each_step(horizon: int) -> None:
    controller = Numbered()
    episode = run_episode(
        FrankaWorld("table"), controller, "wave", 0, 12, horizon=horizon, ensemble=True
    )
    assert controller.calls == list(range(0, 12, horizon))  # asked every `horizon` steps
    for t, step in enumerate(episode.steps):
        # the calls made by step t whose chunk covers it, oldest first (weights exp(-0.01 i))
        covering = [c for c, s in enumerate(controller.calls) if s <= t < s + 8]
        offsets = np.array([8 * c + t - controller.calls[c] for c in covering]) * 1e-3
        weights = np.exp(-0.01 * np.arange(len(covering)))
        expected = controller.pose[0] + weights @ offsets / weights.sum()
        assert step.action[0] == pytest.approx(expected, abs=1e-6)
        assert step.action[7] == pytest.approx(0.5)
    plain = run_episode(FrankaWorld("table"), Numbered(), "wave", 0, 12, horizon=horizon)
    assert plain.steps[5].action[0] != pytest.approx(episode.steps[5].action[0], abs=1e-6)


def test_ensembling_is_refused_in_real_time() -> None:
    with pytest.raises(ConfigError, match="simulated time"):
        run_episode(FrankaWorld("table"), Numbered(), "wave", 0, 5, realtime=True, ensemble=True)


def test_realtime_needs_a_model() -> None:
    with pytest.raises(InvalidObservationError, match="real time needs a model"):
        run_episode(FrankaWorld("table"), ExpertController(), "wave", 0, 5, realtime=True)


@pytest.mark.slow
def test_dual_rate_controller_in_real_time() -> None:
    policy = FlowVLAPolicy.create(PRESETS["tiny"], "dual")
    runtime = DualRateRuntime(policy, DualRateConfig(vlm_update_hz=4.0, action_expert_hz=10.0))
    try:
        episode = run_episode(
            FrankaWorld("table"),
            DualRateController(runtime),
            "wave",
            0,
            max_steps=10,
            horizon=1,
            realtime=True,
        )
    finally:
        runtime.close()
    assert len(episode.steps) == 10
    assert runtime.stats.refreshes >= 2  # features refreshed while the arm kept acting
    assert runtime.stats.expert_calls >= 8
    assert sum(s.held for s in episode.steps) <= 3  # only while the first features were made

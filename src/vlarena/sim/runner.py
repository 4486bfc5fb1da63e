"""The episode runner: observation → controller (a chunk of actions) → MuJoCo steps → record.

A controller is either a policy (in-process or behind the gRPC server: the same code above that
seam) or the scripted expert. The same seed gives the same start state for every controller.
"""

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import mujoco
import numpy as np
from numpy.typing import NDArray

from vlarena.errors import InvalidObservationError, PolicyOutputError
from vlarena.policies.base import Policy, SplitPolicy, VLFeatures
from vlarena.runtime import DualRateRuntime
from vlarena.sim.expert import ScriptedExpert
from vlarena.sim.tasks import SuccessChecker, Task, check_scene, parse_instruction
from vlarena.sim.world import CAMERAS, CONTROL_HZ, FrankaWorld
from vlarena.types import ActionChunk, ModelInfo, Observation, RobotState

MAX_STEPS_CAP = 500
ACTION_DIM = 8  # 7 arm joint targets + gripper
STATE_DIM = 9  # 7 arm joints + 2 finger slides


@dataclass(frozen=True)
class StepRecord:
    """One control step."""

    action: list[float]  # the 8 values applied (after clipping to the joint and grip limits)
    qpos: list[float]  # robot joint positions after the step
    qvel: list[float]  # robot joint velocities after the step
    time_s: float  # simulated time after the step
    inference_ms: float  # model time of the call that produced this action (0 if reused)
    held: bool = False  # real-time mode: the arm held still while the model was thinking
    scene_qpos: list[float] = field(default_factory=list)  # the full model qpos (replay)


@dataclass
class Episode:
    """A whole episode and what is needed to judge and replay it."""

    instruction: str
    task: Task
    seed: int
    scene_id: str
    robot_id: str
    model_id: str
    max_steps: int
    steps: list[StepRecord] = field(default_factory=list)
    success: bool | None = None  # None: the instruction matched no task template
    early_termination: bool = False  # stopped at success before max_steps
    duration_ms: float = 0.0  # wall time of the whole episode
    inference_ms: float = 0.0  # total model time
    mujoco_version: str = mujoco.__version__
    initial_qpos: list[float] = field(default_factory=list)  # full model qpos at reset (replay)


class Controller(ABC):
    """Where an episode's actions come from."""

    @abstractmethod
    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        """Prepare for a new episode; returns the model id to record."""

    @abstractmethod
    def next_chunk(self, world: FrankaWorld, instruction: str, step: int) -> ActionChunk:
        """Actions to run next (executed open-loop up to the runner's horizon)."""


Predict = Callable[[Observation, int], ActionChunk]


class PolicyController(Controller):
    """Renders the model's cameras, sends an observation, gets a chunk back."""

    def __init__(self, info: ModelInfo, predict: Predict) -> None:
        self._info = info
        self._predict = predict
        self._seed = 0

    @classmethod
    def local(cls, policy: Policy) -> "PolicyController":
        """Drive an in-process policy, one observation per call."""
        return cls(policy.info, lambda obs, seed: policy.predict([obs], [seed])[0])

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        check_fits(self._info, world)
        self._seed = seed
        return self._info.name

    def next_chunk(self, world: FrankaWorld, instruction: str, step: int) -> ActionChunk:
        obs = observe(world, self._info, instruction)
        started = time.perf_counter()
        chunk = self._predict(obs, self._seed * 1000 + step)  # noise seed: reproducible episodes
        # The latency a robot sees: model time in-process, plus transport through a server.
        waited_ms = (time.perf_counter() - started) * 1000.0
        return replace(chunk, inference_time_ms=max(waited_ms, chunk.inference_time_ms))


def observe(world: FrankaWorld, info: ModelInfo, instruction: str) -> Observation:
    """What the model sees now: its cameras rendered, the robot's joints."""
    images = {c: world.render(c, info.image_height, info.image_width) for c in info.camera_names}
    return Observation(images, robot_state(world), instruction, "franka", world.time_s)


def robot_state(world: FrankaWorld) -> RobotState:
    """The robot's joint positions and velocities now."""
    return RobotState(world.qpos.astype(np.float32), world.qvel.astype(np.float32))


def check_fits(info: ModelInfo, world: FrankaWorld) -> None:
    """Raise InvalidObservationError unless the model can drive this robot in this scene."""
    problems = []
    if info.action_dim != ACTION_DIM or info.state_dim != STATE_DIM:
        problems.append(f"it has action_dim {info.action_dim} and state_dim {info.state_dim}, "
                        f"the Panda needs {ACTION_DIM} and {STATE_DIM}")  # fmt: skip
    if "franka" not in info.embodiments:
        problems.append(f"it supports {list(info.embodiments)}, not 'franka'")
    missing = sorted(set(info.camera_names) - set(CAMERAS))
    if missing:
        problems.append(f"it needs cameras {missing}; scene {world.scene_id!r} has {CAMERAS}")
    width, height = world.model.vis.global_.offwidth, world.model.vis.global_.offheight
    if info.image_width > width or info.image_height > height:
        problems.append(
            f"its {info.image_height}x{info.image_width} images exceed {height}x{width}"
        )
    if problems:
        raise InvalidObservationError(f"model {info.name!r} cannot run here: {'; '.join(problems)}")


class FeatureReuseController(Controller):
    """A split policy whose features refresh every `reuse` calls; every call acts on the cached
    features with the fresh joint state (the dual-rate schedule, in simulated time)."""

    def __init__(self, policy: SplitPolicy, info: ModelInfo, reuse: int) -> None:
        if reuse < 1:
            raise InvalidObservationError(f"reuse must be ≥ 1, got {reuse}")
        self._policy, self._info, self._reuse = policy, info, reuse
        self._features: VLFeatures | None = None
        self._calls = 0
        self._seed = 0

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        check_fits(self._info, world)
        self._features, self._calls, self._seed = None, 0, seed
        return self._info.name

    def next_chunk(self, world: FrankaWorld, instruction: str, step: int) -> ActionChunk:
        obs = observe(world, self._info, instruction) if self._calls % self._reuse == 0 else None
        started = time.perf_counter()  # model time only, as PolicyController: no rendering
        if obs is not None:
            self._features = self._policy.extract_features([obs])
        assert self._features is not None  # call 0 always refreshes
        self._calls += 1
        state = robot_state(world)
        chunk = self._policy.predict_from_features(
            self._features, [state], [self._seed * 1000 + step]
        )[0]
        return replace(chunk, inference_time_ms=(time.perf_counter() - started) * 1000.0)


class DualRateController(Controller):
    """A split policy in dual-rate mode: features refresh in the background while the action
    expert answers every call at once from the newest ones (use with horizon=1, realtime=True)."""

    def __init__(self, runtime: DualRateRuntime) -> None:
        self._runtime = runtime
        self._seed = 0

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        info = self._runtime.policy.info
        check_fits(info, world)
        self._seed = seed
        self._runtime.reset()  # nothing of the previous episode's scene carries over
        return info.name

    def next_chunk(self, world: FrankaWorld, instruction: str, step: int) -> ActionChunk:
        runtime = self._runtime
        if runtime.should_start_vlm_update():
            runtime.start_vlm_update(observe(world, runtime.policy.info, instruction))
        state = robot_state(world)
        out = runtime.predict_action(state, seed=self._seed * 1000 + step)
        assert out.chunk is not None  # the default cold start waits for the first features
        return out.chunk


class ExpertController(Controller):
    """The scripted expert (privileged: it reads the simulator state), one action per call."""

    def __init__(self) -> None:
        self._expert: ScriptedExpert | None = None

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        self._expert = ScriptedExpert(world, task)
        return "scripted-expert"

    def next_chunk(self, world: FrankaWorld, instruction: str, step: int) -> ActionChunk:
        assert self._expert is not None
        return ActionChunk(self._expert.act()[None].astype(np.float32), 0.0, "scripted-expert")


def run_episode(
    world: FrankaWorld,
    controller: Controller,
    instruction: str,
    seed: int,
    max_steps: int = 50,
    horizon: int | None = None,
    on_step: Callable[[int], None] | None = None,
    realtime: bool = False,
) -> Episode:
    """Run one episode; `horizon` caps how many actions of each chunk run before re-planning.

    `on_step(n)` is called after every step with the number of steps done (progress reports).
    With `realtime`, control steps are paced to the wall clock and the world does not wait
    for the model: control periods that pass during a call are spent holding the last action,
    and the arriving chunk skips the actions meant for those periods.
    """
    if not 1 <= max_steps <= MAX_STEPS_CAP:
        raise InvalidObservationError(f"max_steps must be in 1..{MAX_STEPS_CAP}")
    started = time.perf_counter()
    task = parse_instruction(instruction)
    check_scene(task, world.scene_id)
    world.reset(seed)
    checker = SuccessChecker(task)
    checker.begin(world)
    model_id = controller.start(world, task, seed)
    episode = Episode(instruction, task, seed, world.scene_id, "franka", model_id, max_steps,
                      initial_qpos=world.data.qpos.tolist())  # fmt: skip
    period_s = 1.0 / CONTROL_HZ
    clock_start = time.perf_counter()
    hold = np.concatenate([world.data.ctrl[:7], [1.0]])

    def record(action: NDArray[np.float64], inference_ms: float, held: bool = False) -> bool:
        """Apply one action; True when the episode is over (success or budget)."""
        applied = world.step(action)
        state = (world.qpos.tolist(), world.qvel.tolist(), world.time_s)
        episode.steps.append(StepRecord(applied.tolist(), *state, inference_ms, held,
                                        scene_qpos=world.data.qpos.tolist()))  # fmt: skip
        if on_step is not None:
            on_step(len(episode.steps))
        if checker(world):
            episode.early_termination = len(episode.steps) < max_steps
            return True
        if realtime:
            time.sleep(max(0.0, clock_start + len(episode.steps) * period_s - time.perf_counter()))
        return len(episode.steps) >= max_steps

    done = False
    while not done:
        chunk = controller.next_chunk(world, instruction, len(episode.steps))
        actions = chunk.actions
        if len(actions) == 0 or actions.shape[1] != ACTION_DIM or not np.isfinite(actions).all():
            raise PolicyOutputError(
                f"model {model_id!r} returned actions of shape {chunk.actions.shape} "
                f"(need n>0 x {ACTION_DIM}, finite)"
            )
        episode.inference_ms += chunk.inference_time_ms
        if realtime:  # the world kept moving while the model thought: hold, then skip ahead
            missed = max(
                0, int((time.perf_counter() - clock_start) / period_s) - len(episode.steps)
            )
            for _ in range(min(missed, len(actions))):
                if done := record(hold, 0.0, held=True):
                    break
            actions = actions[missed:]
        for i, action in enumerate(actions[: horizon or len(actions)]):
            if done:
                break
            hold = action.astype(np.float64)
            done = record(hold, chunk.inference_time_ms if i == 0 else 0.0)
    episode.success = checker(world)
    episode.duration_ms = (time.perf_counter() - started) * 1000.0
    return episode

"""The episode runner: observation → controller (a chunk of actions) → MuJoCo steps → record.

A controller is either a policy (in-process or behind the gRPC server: the same code above that
seam) or the scripted expert. The same seed gives the same start state for every controller.
"""

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import mujoco
import numpy as np

from vlarena.errors import InvalidObservationError
from vlarena.sim.expert import ScriptedExpert
from vlarena.sim.tasks import SuccessChecker, Task, parse_instruction
from vlarena.sim.world import FrankaWorld
from vlarena.types import ActionChunk, ModelInfo, Observation, RobotState

MAX_STEPS_CAP = 500


@dataclass(frozen=True)
class StepRecord:
    """One control step."""

    action: list[float]  # the 8 values applied
    qpos: list[float]  # robot joint positions after the step
    qvel: list[float]  # robot joint velocities after the step
    time_s: float  # simulated time after the step
    inference_ms: float  # model time of the call that produced this action (0 if reused)


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

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        cameras = {world.model.camera(i).name for i in range(world.model.ncam)}
        missing = set(self._info.camera_names) - cameras
        if missing:
            raise InvalidObservationError(
                f"model {self._info.name!r} needs cameras {sorted(missing)} that scene "
                f"{world.scene_id!r} lacks (it has {sorted(cameras)})"
            )
        self._seed = seed
        return self._info.name

    def next_chunk(self, world: FrankaWorld, instruction: str, step: int) -> ActionChunk:
        info = self._info
        images = {
            c: world.render(c, info.image_height, info.image_width) for c in info.camera_names
        }
        state = RobotState(world.qpos.astype(np.float32), world.qvel.astype(np.float32))
        obs = Observation(images, state, instruction, "franka", world.time_s)
        return self._predict(obs, self._seed * 1000 + step)  # noise seed: reproducible episodes


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
) -> Episode:
    """Run one episode; `horizon` caps how many actions of each chunk run before re-planning.

    `on_step(n)` is called after every step with the number of steps done (progress reports).
    """
    if not 1 <= max_steps <= MAX_STEPS_CAP:
        raise InvalidObservationError(f"max_steps must be in 1..{MAX_STEPS_CAP}")
    started = time.perf_counter()
    world.reset(seed)
    task = parse_instruction(instruction)
    checker = SuccessChecker(task)
    checker.begin(world)
    model_id = controller.start(world, task, seed)
    episode = Episode(instruction, task, seed, world.scene_id, "franka", model_id, max_steps,
                      initial_qpos=world.data.qpos.tolist())  # fmt: skip
    while len(episode.steps) < max_steps and not episode.early_termination:
        chunk = controller.next_chunk(world, instruction, len(episode.steps))
        episode.inference_ms += chunk.inference_time_ms
        actions = chunk.actions[: horizon or len(chunk.actions)]
        for i, action in enumerate(actions):
            world.step(action.astype(np.float64))
            episode.steps.append(StepRecord(
                action.tolist(), world.qpos.tolist(), world.qvel.tolist(), world.time_s,
                chunk.inference_time_ms if i == 0 else 0.0,
            ))  # fmt: skip
            if on_step is not None:
                on_step(len(episode.steps))
            if checker(world):
                episode.early_termination = len(episode.steps) < max_steps
                break
            if len(episode.steps) >= max_steps:
                break
    episode.success = checker(world)
    episode.duration_ms = (time.perf_counter() - started) * 1000.0
    return episode

"""The episode runner: observation → controller (a chunk of actions) → MuJoCo steps → record.

In simulated time (the default) the world waits for each chunk. In real time the world runs on
the wall clock while the model thinks in the background, and a `ChunkScheduler` decides when to
ask for the next chunk and which of its actions are already in the past, as on a robot.
The same seed gives the same start state for every controller.
"""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import mujoco
import numpy as np
from numpy.typing import NDArray

from vlarena.control import ChunkScheduler, TemporalEnsemble
from vlarena.control.scheduler import Actions
from vlarena.errors import ConfigError, InvalidObservationError, PolicyOutputError
from vlarena.sim.controllers import ACTION_DIM, Controller, ExpertController
from vlarena.sim.tasks import SuccessChecker, Task, check_scene, parse_instruction
from vlarena.sim.world import CONTROL_HZ, FrankaWorld
from vlarena.types import ActionChunk

MAX_STEPS_CAP = 500


@dataclass(frozen=True)
class StepRecord:
    """One control step."""

    action: list[float]  # the 8 values applied (after clipping to the joint and grip limits)
    qpos: list[float]  # robot joint positions after the step
    qvel: list[float]  # robot joint velocities after the step
    time_s: float  # simulated time after the step
    # The wait for the chunk this action starts (0 for its later actions): the chunk's
    # latency_ms, or in real time the scheduler's measured request-to-arrival time.
    inference_ms: float
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


class _Recorder:
    """Applies actions to the world and records them, paced to the wall clock in real time."""

    def __init__(
        self,
        world: FrankaWorld,
        episode: Episode,
        checker: SuccessChecker,
        on_step: Callable[[int], None] | None,
        realtime: bool,
    ) -> None:
        self.world, self.episode, self.checker = world, episode, checker
        self.on_step, self.realtime = on_step, realtime
        self.hold = np.concatenate([world.data.ctrl[:7], [1.0]])  # what idle steps apply
        self.clock_start = time.perf_counter()

    def record(self, action: NDArray[np.floating] | None, inference_ms: float = 0.0) -> bool:
        """Apply one action (None: hold the last one); True when the episode is over."""
        world, episode = self.world, self.episode
        if action is not None:
            self.hold = action.astype(np.float64)
        applied = world.step(self.hold)
        state = (world.qpos.tolist(), world.qvel.tolist(), world.time_s)
        episode.steps.append(
            StepRecord(
                applied.tolist(),
                *state,
                inference_ms,
                action is None,
                scene_qpos=world.data.qpos.tolist(),
            )
        )
        episode.inference_ms += inference_ms
        if self.on_step is not None:
            self.on_step(len(episode.steps))
        if self.checker(world):
            episode.early_termination = len(episode.steps) < episode.max_steps
            return True
        if self.realtime:
            due = self.clock_start + len(episode.steps) / CONTROL_HZ
            time.sleep(max(0.0, due - time.perf_counter()))
        return len(episode.steps) >= episode.max_steps


def run_episode(
    world: FrankaWorld,
    controller: Controller,
    instruction: str,
    seed: int,
    max_steps: int = 50,
    horizon: int | None = None,
    on_step: Callable[[int], None] | None = None,
    realtime: bool = False,
    task: Task | None = None,
    blend: str = "latest",
    ensemble: bool = False,
) -> Episode:
    """Run one episode; `horizon` caps how many actions of each chunk run before re-planning.
    With `ensemble` (simulated time only) each step runs the mean of the newest chunks' predictions
    for it (`TemporalEnsemble`), not the newest chunk's alone.

    `on_step(n)` is called after every step with the number of steps done (progress reports).
    With `realtime`, control steps are paced to the wall clock and the world does not wait for
    the model: a `ChunkScheduler` asks for chunks early enough for the measured latency, drops
    the actions of an arriving chunk that are already in the past, and merges the rest with
    `blend` (latest, weighted or rtc); the arm holds still while no action is ready.

    `task` is the instruction already parsed and checked against this scene by the caller;
    None parses and checks it here.
    """
    if not 1 <= max_steps <= MAX_STEPS_CAP:
        raise InvalidObservationError(f"max_steps must be in 1..{MAX_STEPS_CAP}")
    if realtime and isinstance(controller, ExpertController):
        raise InvalidObservationError("real time needs a model: the expert plans one step ahead")
    if realtime and ensemble:
        raise ConfigError("temporal ensembling runs in simulated time; real time uses a blend")
    started = time.perf_counter()
    if task is None:
        task = parse_instruction(instruction)
        check_scene(task, world.scene_id)
    world.reset(seed)
    checker = SuccessChecker(task)
    checker.begin(world)
    model_id = controller.start(world, task, seed)
    episode = Episode(
        instruction,
        task,
        seed,
        world.scene_id,
        "franka",
        model_id,
        max_steps,
        initial_qpos=world.data.qpos.tolist(),
    )
    recorder = _Recorder(world, episode, checker, on_step, realtime)
    if realtime:
        _in_real_time(recorder, controller, instruction, horizon, blend)
    else:
        _in_sim_time(recorder, controller, instruction, horizon, ensemble)
    episode.success = checker(world)
    episode.duration_ms = (time.perf_counter() - started) * 1000.0
    return episode


def _in_sim_time(
    recorder: _Recorder,
    controller: Controller,
    instruction: str,
    horizon: int | None,
    ensemble: bool,
) -> None:
    """Ask, run up to `horizon` actions of the chunk, ask again: the world waits for the model.
    With `ensemble` each step runs the mean of the recent chunks' predictions for it."""
    ensembled = TemporalEnsemble() if ensemble else None
    done = False
    while not done:
        step = len(recorder.episode.steps)
        chunk = controller.next_chunk(recorder.world, instruction, step)
        actions = _checked(chunk, recorder.episode.model_id)
        if ensembled is not None:
            ensembled.add(step, actions)
        for i in range(min(horizon or len(actions), len(actions))):
            action = actions[i] if ensembled is None else ensembled.action(step + i)
            # the latency the robot waited for this chunk, on the step it arrived
            if done := recorder.record(action, chunk.latency_ms if i == 0 else 0.0):
                break


def _in_real_time(
    recorder: _Recorder, controller: Controller, instruction: str, horizon: int | None, blend: str
) -> None:
    """The world steps at the control rate; chunks are made in the background meanwhile."""
    world, episode = recorder.world, recorder.episode

    def request() -> Callable[[], Actions]:
        produce = controller.prepare(world, instruction, len(episode.steps))  # render now
        return lambda: _checked(produce(), episode.model_id)

    with ThreadPoolExecutor(1, thread_name_prefix="episode-model") as pool:
        scheduler = ChunkScheduler(
            request,
            CONTROL_HZ,
            blend,
            initial_latency_s=0.0,
            clock=time.perf_counter,
            executor=pool,
            horizon=horizon,
        )
        done = False
        while not done:
            merged = scheduler.merged
            action = scheduler.step()
            fresh = scheduler.merged != merged  # this step's action comes from a new chunk
            latency_ms = scheduler.latency_s * 1000.0 if fresh else 0.0
            done = recorder.record(
                None if action is None else action.astype(np.float64), latency_ms
            )


def _checked(chunk: ActionChunk, model_id: str) -> Actions:
    """The chunk's actions, or PolicyOutputError if the simulator cannot take them."""
    actions = chunk.actions
    if len(actions) == 0 or actions.shape[1] != ACTION_DIM or not np.isfinite(actions).all():
        raise PolicyOutputError(
            f"model {model_id!r} returned actions of shape {actions.shape} "
            f"(need n>0 x {ACTION_DIM}, finite)"
        )
    return actions

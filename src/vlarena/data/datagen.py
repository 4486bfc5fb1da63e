"""Scripted-expert demonstrations: parallel workers roll out episodes, the parent writes them."""

import dataclasses
import multiprocessing as mp
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlarena.data.dataset import EpisodeRecord, write_dataset
from vlarena.data.paraphrases import TASK_NAMES, draw_instruction
from vlarena.errors import ConfigError
from vlarena.sim import ExpertController, run_episode
from vlarena.sim.tasks import Task
from vlarena.sim.world import CAMERAS, FrankaWorld, shared_world
from vlarena.types import ActionChunk

DATAGEN_SEED_LIMIT = 1_000_000  # evaluation start states use seeds from here on: never trained on


@dataclass(frozen=True)
class DatagenConfig:
    """What to generate: how many episodes of which tasks, at what image size."""

    episodes: int = 600  # successful episodes wanted (failed expert runs are dropped on top)
    tasks: tuple[str, ...] = TASK_NAMES  # drawn round-robin, so every task gets its share
    image_size: int = 96  # square camera images, pixels
    max_steps: int = 80  # expert episodes longer than this count as failed
    seed: int = 0  # episode i uses seed `seed + i`: start state, colours and wording
    workers: int = 2  # rollout processes (0: in this process)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ConfigError("episodes must be ≥ 1")
        unknown = sorted(set(self.tasks) - set(TASK_NAMES))
        if not self.tasks or unknown:
            raise ConfigError(f"unknown tasks {unknown}; valid: {list(TASK_NAMES)}")
        if not 16 <= self.image_size <= 480:
            raise ConfigError("image_size must be in 16..480")
        if self.max_steps < 1 or self.workers < 0 or self.seed < 0:
            raise ConfigError("max_steps must be ≥ 1, workers and seed ≥ 0")
        # At most 2·episodes attempts (more failures than successes abort the run).
        if self.seed + 2 * self.episodes > DATAGEN_SEED_LIMIT:
            raise ConfigError(
                f"datagen seeds must stay below {DATAGEN_SEED_LIMIT:,} (the "
                "evaluation seeds start there)"
            )


class RecordingExpert(ExpertController):
    """The scripted expert, also recording what a policy would have seen before each action."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.size = image_size
        self.frames: dict[str, list[NDArray[np.uint8]]] = {c: [] for c in CAMERAS}
        self.states: list[NDArray[np.float32]] = []
        self.targets: list[NDArray[np.float32]] = []
        self._task: Task | None = None

    def start(self, world: FrankaWorld, task: Task, seed: int) -> str:
        self._task = task
        return super().start(world, task, seed)

    def next_chunk(self, world: FrankaWorld, instruction: str, step: int) -> ActionChunk:
        for camera in CAMERAS:
            self.frames[camera].append(world.render(camera, self.size, self.size))
        self.states.append(np.concatenate([world.qpos, world.qvel]).astype(np.float32))
        assert self._task is not None, "start() first"
        self.targets.append(grounding_target(world, self._task))
        return super().next_chunk(world, instruction, step)

    def record(
        self,
        task: str,
        instruction: str,
        scene_id: str,
        seed: int,
        actions: list[NDArray[np.float64]],
        takeover: int = 0,
    ) -> EpisodeRecord:
        """What was recorded, with the actions applied after each observation."""
        return EpisodeRecord(
            task=task,
            instruction=instruction,
            scene_id=scene_id,
            seed=seed,
            images={c: np.stack(frames) for c, frames in self.frames.items()},
            states=np.stack(self.states),
            actions=np.array(actions, dtype=np.float32),
            targets=np.stack(self.targets),
            takeover=takeover,
        )


def grounding_target(world: FrankaWorld, task: Task) -> NDArray[np.float32]:
    """What the backbone learns to see: the named cube (xyz, sin/cos of 4·yaw) and the grip xyz
    (GROUNDING_DIM), then where the task places the cube (PLACE_DIM): the other cube (stack, next
    to), the bin's floor centre, or the named cube itself (tasks that place nothing)."""
    assert task.color is not None
    cube = world.cube(task.color)
    angle = 4.0 * cube.yaw  # a cube looks the same every 90°
    place = cube.position  # tasks that place nothing
    if task.other is not None:
        place = world.cube(task.other).position
    elif task.kind == "bin" and (bin_at := world.bin_position) is not None:
        place = bin_at
    return np.concatenate(
        [cube.position, [np.sin(angle), np.cos(angle)], world.grip_position, place]
    ).astype(np.float32)


def rollout(task: str, seed: int, image_size: int, max_steps: int) -> EpisodeRecord | None:
    """One expert episode of `task` from `seed`; None when the expert failed."""
    rng = np.random.default_rng(seed)
    scene, instruction = draw_instruction(rng, task)
    world = shared_world(scene)
    recorder = RecordingExpert(image_size)
    episode = run_episode(world, recorder, instruction, seed, max_steps=max_steps)
    if not episode.success:
        return None
    actions = [np.array(s.action) for s in episode.steps]
    return recorder.record(task, instruction, scene, seed, actions)


def _rollout_job(job: tuple[str, int, int, int]) -> tuple[str, EpisodeRecord | None]:
    return job[0], rollout(*job)


def _jobs(cfg: DatagenConfig) -> Iterator[tuple[str, int, int, int]]:
    i = 0
    while True:
        yield cfg.tasks[i % len(cfg.tasks)], cfg.seed + i, cfg.image_size, cfg.max_steps
        i += 1


@dataclass(frozen=True)
class DatagenReport:
    """What datagen did."""

    episodes: int  # kept (successful) episodes
    frames: int  # control steps in them
    dropped: dict[str, int]  # failed expert episodes per task


def generate(
    cfg: DatagenConfig, out: Path, progress: Callable[[int], None] | None = None
) -> DatagenReport:
    """Roll out until `cfg.episodes` succeed, drop failures, write the dataset to `out`.

    `progress(n)` is called with the number of episodes kept so far.
    """
    kept: list[EpisodeRecord] = []
    dropped = dict.fromkeys(cfg.tasks, 0)
    context = mp.get_context("spawn")  # fork after MuJoCo/EGL or torch threads is not safe
    pool = context.Pool(cfg.workers) if cfg.workers else None
    try:
        results = (
            pool.imap(_rollout_job, _jobs(cfg), chunksize=1)
            if pool
            else map(_rollout_job, _jobs(cfg))
        )
        for task, record in results:  # imap keeps the seed order: reproducible datasets
            if record is None:
                dropped[task] += 1
                if sum(dropped.values()) > cfg.episodes:
                    raise ConfigError(f"the expert failed more often than it succeeded: {dropped}")
                continue
            kept.append(record)
            if progress is not None:
                progress(len(kept))
            if len(kept) == cfg.episodes:
                break
    finally:
        if pool is not None:
            pool.terminate()
    write_dataset(out, kept, cfg.image_size, CAMERAS, config_dict(cfg), dropped)
    return DatagenReport(len(kept), sum(len(r.actions) for r in kept), dropped)


def config_dict(cfg: Any) -> dict[str, object]:
    """A generator config as stored in meta.json, without the worker count (it changes the
    speed, not the method: workers run one episode each, in seed order)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "workers"}

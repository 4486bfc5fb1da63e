"""The evaluation harness: fixed seed lists per task, episodes in worker processes or on Ray."""

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from vlarena.data.datagen import DATAGEN_SEED_LIMIT
from vlarena.data.paraphrases import TASK_NAMES, WORDINGS, fill, task_templates
from vlarena.errors import ConfigError, UnknownNameError
from vlarena.policies import DeviceConfig
from vlarena.policies.base import SplitPolicy
from vlarena.policies.specs import parse_spec, resolve_policy
from vlarena.serving import remote
from vlarena.sim import (
    Controller,
    ExpertController,
    FeatureReuseController,
    PolicyController,
    run_episode,
)
from vlarena.sim.tasks import TOUCH_DISTANCE_M, parse_instruction
from vlarena.sim.world import COLORS, FrankaWorld, shared_world

EXPERT = "scripted-expert"
EVAL_SEED_BASE = DATAGEN_SEED_LIMIT  # datagen stays below: no start state is seen in training
TASK_SEED_STRIDE = 100_000
MAX_EPISODES = 10_000  # per task
# Step budgets per task: about 2.5x what the scripted expert needs.
MAX_STEPS = {
    "touch": 40,
    "push_left": 50,
    "push_right": 50,
    "lift": 60,
    "stack": 120,
    "next_to": 120,
    "bin": 120,
}
MOVED_M = 0.015  # a cube displaced this far counts as acted on
VIDEO_SIZE = (240, 320)  # height, width of recorded MP4 frames


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate: tasks, episodes per task, how closed-loop, where."""

    tasks: tuple[str, ...] = TASK_NAMES  # task names (data.paraphrases.TASK_NAMES)
    episodes: int = 20  # per task; episode i of a task always gets the same seed
    horizon: int = 1  # actions of each chunk executed before the model is asked again
    ensemble: bool = True  # run each step's mean over the chunks predicting it (ACT's temporal
    # ensembling, control.TemporalEnsemble); False: the newest chunk's action
    workers: int = 2  # worker processes (0: in this process)
    videos: int = 0  # MP4s of the first episodes of each task (needs an output directory)
    wordings: str = "trained"  # WORDINGS: instructions worded as in training, or held out
    feature_reuse: int = 1  # > 1: vision-language features refresh every this many model calls
    # (the dual-rate schedule); each call acts on them with the fresh joint state

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASK_NAMES))
        if not self.tasks or unknown:
            raise UnknownNameError("task", ", ".join(unknown) or "(none)", TASK_NAMES)
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"tasks repeat: {list(self.tasks)}")
        if not 1 <= self.episodes <= MAX_EPISODES:
            raise ConfigError(f"episodes must be in 1..{MAX_EPISODES}")
        if self.wordings not in WORDINGS:
            raise UnknownNameError("wording split", self.wordings, WORDINGS)
        if self.horizon < 1 or self.workers < 0 or self.videos < 0 or self.feature_reuse < 1:
            raise ConfigError("horizon and feature_reuse must be ≥ 1, workers and videos ≥ 0")


@dataclass(frozen=True)
class EpisodeResult:
    """One evaluated episode."""

    task: str
    seed: int
    instruction: str
    success: bool
    first_touched: str | None  # the first cube the robot acted on (touched or moved); None: none
    named: str  # the cube the instruction named
    steps: int  # control steps until success or the budget
    video: str | None = None  # MP4 path, if recorded

    @property
    def correct_target(self) -> bool | None:
        """Whether the first cube acted on was the named one (None: it touched no cube)."""
        return None if self.first_touched is None else self.first_touched == self.named


def eval_seeds(task: str, episodes: int) -> list[int]:
    """The fixed start states of a task: identical for every model evaluated."""
    base = EVAL_SEED_BASE + TASK_NAMES.index(task) * TASK_SEED_STRIDE
    return list(range(base, base + episodes))


def eval_instruction(task: str, seed: int, wordings: str = "trained") -> tuple[str, str]:
    """(scene, instruction) of an eval episode: colours and wording (of the split) from the seed."""
    scene, templates = task_templates(task, wordings)
    a, b = np.random.default_rng(seed).choice(COLORS, size=2, replace=False)
    return scene, fill(templates[seed % len(templates)], a, b)


def check_model(model: str) -> None:
    """Raise (UnknownNameError, CheckpointError, ConfigError) unless the spec names a model
    (scripted-expert or a model spec, `vlarena.policies.specs`), loading nothing."""
    if model != EXPERT:
        parse_spec(model)


def make_controller(model: str, feature_reuse: int = 1) -> Controller:
    """A controller for scripted-expert or a model spec (`vlarena.policies.specs`: a shipped
    name, a checkpoint directory, TYPE:PRESET, grpc://HOST:PORT/MODEL or an openpi server's
    ws:// URL); with `feature_reuse` > 1 a split policy refreshes its features every that many
    calls."""
    if model == EXPERT:
        return ExpertController()
    # A remote model's server may want the token `vlarena predict` and `health` use too.
    connect = partial(remote.connect, token=os.environ.get("VLA_AUTH_TOKEN"))
    policy = resolve_policy(model, DeviceConfig(), connect)
    if feature_reuse == 1:
        return PolicyController(policy)
    if not isinstance(policy, SplitPolicy):
        raise ConfigError(f"feature reuse needs a split policy; {model!r} is not one")
    return FeatureReuseController(policy, policy.info, feature_reuse)


@dataclass(frozen=True)
class EpisodeJob:
    """One episode of an evaluation."""

    model: str  # model spec (make_controller)
    task: str
    seed: int
    horizon: int  # actions of each chunk run before the model is asked again
    ensemble: bool  # temporal ensembling of overlapping chunks
    wordings: str  # WORDINGS
    feature_reuse: int = 1  # model calls per feature refresh
    video: Path | None = None  # MP4 to record, if any


_CONTROLLERS: dict[tuple[str, int], Controller] = {}  # per worker process: models load once


def evaluate_episode(job: EpisodeJob) -> EpisodeResult:
    """Run one eval episode in this process (models and worlds are cached per process)."""
    key = (job.model, job.feature_reuse)
    if key not in _CONTROLLERS:
        _CONTROLLERS[key] = make_controller(*key)
    task, seed, video = job.task, job.seed, job.video
    scene, instruction = eval_instruction(task, seed, job.wordings)
    world = shared_world(scene)
    named = parse_instruction(instruction).color
    assert named is not None
    world.reset(seed)
    start = {c: world.cube(c).position.copy() for c in COLORS}
    first: list[str] = []
    frames: list[np.ndarray] = []

    def watch(_: int) -> None:
        if not first:
            first.extend(c for c in COLORS if _acted_on(world, c, start[c]))
        if video is not None:
            frames.append(world.render("front", *VIDEO_SIZE))

    episode = run_episode(
        world,
        _CONTROLLERS[key],
        instruction,
        seed,
        max_steps=MAX_STEPS[task],
        horizon=job.horizon,
        on_step=watch,
        ensemble=job.ensemble,
    )
    if video is not None and frames:
        import imageio.v3 as iio

        video.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(video, np.stack(frames), fps=10, codec="libx264")
    return EpisodeResult(
        task,
        seed,
        instruction,
        bool(episode.success),
        first[0] if first else None,
        named,
        len(episode.steps),
        str(video) if video is not None else None,
    )


def _acted_on(world: FrankaWorld, color: str, start: np.ndarray) -> bool:
    """Whether the robot touches, nears (the touch task's distance) or has moved the cube."""
    cube = world.cube(color).position
    return bool(
        world.touching(color)
        or np.linalg.norm(cube - start) > MOVED_M
        or np.linalg.norm(world.grip_position - cube) < TOUCH_DISTANCE_M
    )


def jobs_for(model: str, cfg: EvalConfig, video_dir: Path | None) -> list[EpisodeJob]:
    """Every episode of an evaluation, in a fixed order."""
    jobs: list[EpisodeJob] = []
    for task in cfg.tasks:
        for i, seed in enumerate(eval_seeds(task, cfg.episodes)):
            video = video_dir / f"{task}_{seed}.mp4" if video_dir and i < cfg.videos else None
            jobs.append(
                EpisodeJob(
                    model,
                    task,
                    seed,
                    cfg.horizon,
                    cfg.ensemble,
                    cfg.wordings,
                    cfg.feature_reuse,
                    video,
                )
            )
    return jobs


def evaluate(
    model: str,
    cfg: EvalConfig,
    video_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    use_ray: bool = False,
) -> list[EpisodeResult]:
    """Every episode of the evaluation, in job order; `progress(n)` after each finished one."""
    check_model(model)  # in this process: a bad name fails here, not in every worker
    jobs = jobs_for(model, cfg, video_dir)
    if use_ray:
        return _evaluate_on_ray(jobs, progress)
    if cfg.workers == 0:
        return _collect(map(evaluate_episode, jobs), progress)
    with mp.get_context("spawn").Pool(cfg.workers, initializer=one_torch_thread) as pool:
        return _collect(pool.imap(evaluate_episode, jobs), progress)


def one_torch_thread() -> None:
    """Worker processes share the cores: one torch thread each, not one per core each."""
    import torch

    torch.set_num_threads(1)


def _collect(
    results: Iterable[EpisodeResult], progress: Callable[[int], None] | None
) -> list[EpisodeResult]:
    done: list[EpisodeResult] = []
    for result in results:
        done.append(result)
        if progress is not None:
            progress(len(done))
    return done


def _evaluate_on_ray(
    jobs: Sequence[EpisodeJob], progress: Callable[[int], None] | None
) -> list[EpisodeResult]:
    """The same jobs as Ray tasks on the cluster `ray.init()` connects to (or a local one)."""
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False)  # RAY_ADDRESS names a cluster; else a local one
    remote = ray.remote(evaluate_episode)
    refs = [remote.remote(job) for job in jobs]
    order = {ref: i for i, ref in enumerate(refs)}
    results: list[EpisodeResult | None] = [None] * len(refs)
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        results[order[ready[0]]] = ray.get(ready[0])
        if progress is not None:
            progress(len(refs) - len(pending))
    return [r for r in results if r is not None]

"""Recovery data, DAgger-style: a learning policy drives, the scripted expert takes over.

Behaviour cloning sees only the states the expert visits. A learned policy drifts off them (a
grasp closes on nothing beside the cube, a cube is set down a few centimetres off) and has never
seen how to come back. Here the policy rolls out episodes on training seeds. At a few of the
states it reached, the expert takes over, planning from that state (`sim.expert.plan`), and what
it does from there is recorded as a demonstration if it succeeds. The result is a dataset: the
base demonstrations plus these recovery episodes, so training on it aggregates both.
"""

import multiprocessing as mp
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import mujoco
import numpy as np
from numpy.typing import NDArray

from vlarena.data.datagen import DATAGEN_SEED_LIMIT, RecordingExpert, config_dict
from vlarena.data.dataset import DemoDataset, EpisodeRecord, write_dataset
from vlarena.data.paraphrases import TASK_NAMES, draw_instruction
from vlarena.errors import ConfigError
from vlarena.evaluation.harness import (
    MAX_STEPS,
    check_model,
    make_controller,
    one_torch_thread,
)
from vlarena.sim import Controller, run_episode
from vlarena.sim.tasks import SuccessChecker, parse_instruction
from vlarena.sim.world import FrankaWorld, shared_world

_STATE = mujoco.mjtState.mjSTATE_INTEGRATION  # everything the next step depends on


@dataclass(frozen=True)
class DaggerConfig:
    """One round of recovery data: which policy drives, on which tasks, how often the expert
    takes over."""

    model: str  # the learning policy (a checkpoint directory or any model spec)
    episodes: int = 300  # policy episodes rolled out, tasks drawn round-robin
    tasks: tuple[str, ...] = TASK_NAMES  # repeat one to weight it
    takeovers: int = 3  # expert takeovers per policy episode, at distinct random steps
    horizon: int = 4  # actions of each policy chunk run before it is asked again
    ensemble: bool = False  # the policy's steps run the mean of the chunks predicting them
    max_steps: int = 80  # expert steps after a takeover; longer counts as failed
    seed: int = 500_000  # policy episode i uses seed `seed + i` (below the evaluation seeds)
    workers: int = 2  # rollout processes (0: in this process)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASK_NAMES))
        if not self.tasks or unknown:
            raise ConfigError(f"unknown tasks {unknown}; valid: {list(TASK_NAMES)}")
        if self.episodes < 1 or self.takeovers < 1 or self.horizon < 1 or self.max_steps < 1:
            raise ConfigError("episodes, takeovers, horizon and max_steps must be ≥ 1")
        if self.workers < 0 or self.seed < 0:
            raise ConfigError("workers and seed must be ≥ 0")
        if self.seed + self.episodes > DATAGEN_SEED_LIMIT:
            raise ConfigError(
                f"training seeds must stay below {DATAGEN_SEED_LIMIT:,} (the evaluation "
                "seeds start there)"
            )


@dataclass(frozen=True)
class _Job:
    cfg: DaggerConfig
    task: str
    seed: int
    image_size: int


@dataclass(frozen=True)
class _Outcome:
    """What one policy episode gave."""

    task: str
    policy_success: bool
    records: list[EpisodeRecord]  # the expert's successful takeovers
    failed_takeovers: int


_CONTROLLERS: dict[str, Controller] = {}  # per worker process: the policy loads once


def _policy_episode(job: _Job) -> _Outcome:
    """Roll the policy out, then let the expert take over from a few of the states it reached."""
    cfg = job.cfg
    if cfg.model not in _CONTROLLERS:
        _CONTROLLERS[cfg.model] = make_controller(cfg.model)
    rng = np.random.default_rng(job.seed)
    scene, instruction = draw_instruction(rng, job.task)
    world = shared_world(scene)
    task = parse_instruction(instruction)
    world.reset(job.seed)  # (run_episode resets it again, to the same state)
    checker = SuccessChecker(task)
    checker.begin(world)  # success is judged against the episode's start, as it was for the policy
    states: list[NDArray[np.float64]] = []
    episode = run_episode(
        world,
        _CONTROLLERS[cfg.model],
        instruction,
        job.seed,
        max_steps=MAX_STEPS[job.task],
        horizon=cfg.horizon,
        on_step=lambda _: states.append(_save(world)),
        task=task,
        ensemble=cfg.ensemble,
    )
    # States before the last one (the last may be the success itself); the start state is the
    # demonstrations' own.
    candidates = len(states) - 1
    steps = rng.choice(candidates, size=min(cfg.takeovers, candidates), replace=False)
    records, failed = [], 0
    for step in sorted(steps.tolist()):
        _load(world, states[step])
        if checker(world):
            continue  # already done: nothing to demonstrate
        record = _takeover(world, checker, job, instruction, takeover=step + 1)
        if record is None:
            failed += 1
        else:
            records.append(record)
    return _Outcome(job.task, bool(episode.success), records, failed)


def _takeover(
    world: FrankaWorld, checker: SuccessChecker, job: _Job, instruction: str, takeover: int
) -> EpisodeRecord | None:
    """The expert from the world's current state (after `takeover` policy steps), recorded;
    None when it fails."""
    expert = RecordingExpert(job.image_size)
    expert.start(world, checker.task, job.seed)  # plans from here
    actions = []
    for i in range(job.cfg.max_steps):
        chunk = expert.next_chunk(world, instruction, i)
        actions.append(world.step(chunk.actions[0].astype(np.float64)))
        if checker(world):
            return expert.record(job.task, instruction, world.scene_id, job.seed, actions, takeover)
    return None


def _save(world: FrankaWorld) -> NDArray[np.float64]:
    state = np.empty(mujoco.mj_stateSize(world.model, _STATE))
    mujoco.mj_getState(world.model, world.data, state, _STATE)
    return state


def _load(world: FrankaWorld, state: NDArray[np.float64]) -> None:
    mujoco.mj_setState(world.model, world.data, state, _STATE)
    mujoco.mj_forward(world.model, world.data)


@dataclass(frozen=True)
class DaggerReport:
    """What a round collected."""

    policy_success: dict[str, tuple[int, int]]  # per task: policy episodes succeeded, run
    episodes: int  # recovery episodes kept
    frames: int  # control steps in them
    failed_takeovers: int  # expert takeovers that did not succeed (dropped)


def _jobs(cfg: DaggerConfig, image_size: int) -> Iterator[_Job]:
    for i in range(cfg.episodes):
        yield _Job(cfg, cfg.tasks[i % len(cfg.tasks)], cfg.seed + i, image_size)


def collect(
    cfg: DaggerConfig, base: Path, out: Path, progress: Callable[[int], None] | None = None
) -> DaggerReport:
    """Roll out `cfg.model`, record the expert's takeovers, and write `out`: the dataset at
    `base` followed by the recovery episodes. `progress(n)` after each policy episode."""
    check_model(cfg.model)  # here: a bad name fails once, not in every worker
    if out.exists():  # never the base itself: writing would truncate the files being read
        raise ConfigError(f"{out} exists; recovery data go to a new dataset directory")
    demos = DemoDataset(base)
    reused = {e.seed for e in demos.meta.episodes} & set(range(cfg.seed, cfg.seed + cfg.episodes))
    if reused:
        raise ConfigError(
            f"the base dataset has episodes of seeds {sorted(reused)[:3]}...: the same start "
            "states again; choose another seed"
        )
    jobs = _jobs(cfg, demos.meta.image_size)
    outcomes: list[_Outcome] = []
    context = mp.get_context("spawn")  # fork after MuJoCo/EGL or torch threads is not safe
    pool = context.Pool(cfg.workers, initializer=one_torch_thread) if cfg.workers else None
    try:
        # imap keeps the seed order: the same data from the same policy and config
        for outcome in pool.imap(_policy_episode, jobs) if pool else map(_policy_episode, jobs):
            outcomes.append(outcome)
            if progress is not None:
                progress(len(outcomes))
    finally:
        if pool is not None:
            pool.terminate()
    # In the base's layout: a dataset written before the place targets keeps its 8 columns.
    width = demos.target.shape[1]
    recovered = [replace(r, targets=r.targets[:, :width]) for o in outcomes for r in o.records]
    if not recovered:
        raise ConfigError("no expert takeover succeeded: nothing to add")
    previous = demos.meta.datagen.get("dagger", [])
    rounds = previous if isinstance(previous, list) else [previous]
    datagen = {**demos.meta.datagen, "dagger": [*rounds, config_dict(cfg)]}  # every round so far
    write_dataset(
        out,
        [*demos.records(), *recovered],
        demos.meta.image_size,
        demos.meta.cameras,
        datagen,
        demos.meta.dropped,
    )
    success: dict[str, tuple[int, int]] = {}
    for o in outcomes:
        done, run = success.get(o.task, (0, 0))
        success[o.task] = (done + o.policy_success, run + 1)
    return DaggerReport(
        success,
        len(recovered),
        sum(len(r.actions) for r in recovered),
        sum(o.failed_takeovers for o in outcomes),
    )

"""Synchronous vs dual-rate inference, with 1 and 5 camera views."""

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
from rich.progress import Progress

from vlarena.policies import PRESETS, FlowVLAPolicy
from vlarena.policies.synthetic import synthetic_observation
from vlarena.runtime import DualRateConfig, DualRateRuntime, run_loop
from vlarena.sim import DualRateController, FrankaWorld, PolicyController, run_episode

EXPERT_HZ = 50.0
WINDOW_S = 4.0


def _policy(views: int) -> FlowVLAPolicy:
    config = PRESETS["small"]
    cameras = tuple(f"view{i}" for i in range(views))
    backbone = dataclasses.replace(config.backbone, camera_names=cameras)
    return FlowVLAPolicy.create(dataclasses.replace(config, backbone=backbone), f"{views}-views")


def _jitter(periods: Sequence[float], percentile: float) -> float:
    nominal = float(np.median(periods))
    return float(np.percentile(np.abs(np.asarray(periods) - nominal) * 1000.0, percentile))


def _synchronous(policy: FlowVLAPolicy) -> str:
    """Every step runs the whole model (features + expert), as fast as it can."""
    obs = synthetic_observation(policy.info)
    policy.predict([obs])
    ticks = []
    start = time.perf_counter()
    while time.perf_counter() - start < WINDOW_S:
        ticks.append(time.perf_counter())
        policy.predict([obs])
    periods = list(np.diff(ticks))
    rate = 1.0 / statistics.median(periods)
    actions = rate * policy.info.chunk_size
    age_ms = statistics.median(periods) * 1000.0
    return (
        f"| synchronous | {rate:.1f} | {actions:.0f} | {_jitter(periods, 50):.2f} "
        f"| {_jitter(periods, 99):.2f} | {age_ms:.0f} | - | - |"
    )


def _dual_rate(policy: FlowVLAPolicy, threads: tuple[int, int]) -> str:
    obs = synthetic_observation(policy.info)
    feature_ms = min(_time(lambda: policy.extract_features([obs])) for _ in range(5))
    config = DualRateConfig(
        vlm_update_hz=1000.0 / (feature_ms * 1.15),
        action_expert_hz=EXPERT_HZ,
        vlm_threads=threads[0],
        expert_threads=threads[1],
    )
    runtime = DualRateRuntime(policy, config)
    try:
        report = run_loop(runtime, lambda: obs, WINDOW_S)
    finally:
        runtime.close()
    rate = len(report.outputs) / WINDOW_S
    age_ms = statistics.median(runtime.stats.feature_age_s) * 1000.0
    refresh_hz = runtime.stats.refreshes / WINDOW_S
    jitter = f"{report.jitter_ms(50):.2f} | {report.jitter_ms(99):.2f}"
    return (
        f"| dual-rate (VLM {threads[0]} thread, expert {threads[1]}) | {rate:.1f} "
        f"| {report.actions_per_s:.0f} | {jitter} | {age_ms:.0f} | {refresh_hz:.1f} "
        f"| {runtime.stats.missed_deadlines} |"
    )


def _time(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000.0


def _episodes(policy: FlowVLAPolicy, seeds: int = 3, steps: int = 30) -> list[str]:
    """Real-time episodes on the same seeds: how much of the time the arm had actions to run."""
    rows = []
    sync = PolicyController(policy)
    runtime = DualRateRuntime(policy, DualRateConfig(vlm_update_hz=3.0, action_expert_hz=10.0))
    try:
        modes = (("synchronous", sync, None), ("dual-rate", DualRateController(runtime), 1))
        for name, controller, horizon in modes:
            held, wall = 0, 0.0
            for seed in range(seeds):
                episode = run_episode(
                    FrankaWorld("table"),
                    controller,
                    "pick up the red cube",
                    seed,
                    steps,
                    horizon=horizon,
                    realtime=True,
                )
                held += sum(step.held for step in episode.steps)
                wall += episode.duration_ms
            rows.append(
                f"| {name} | {seeds} x {steps} | {100 * held / (seeds * steps):.0f} % "
                f"| {wall / seeds / 1000:.1f} s |"
            )
    finally:
        runtime.close()
    return rows


def run(samples: int, progress: Progress) -> str:
    """Markdown section: synchronous vs asynchronous inference, measured here."""
    rows = []
    task = progress.add_task("dual-rate", total=6)  # plus real-time episodes at 5 views
    episodes = _episodes(FlowVLAPolicy.create(PRESETS["small"], "vla-flow-small"))
    for views in (1, 5):
        policy = _policy(views)
        rows.append(f"| **{views} view(s)** | | | | | | | |")
        rows.append(_synchronous(policy))
        progress.advance(task)
        for threads in ((1, 1), (2, 2)):
            rows.append(_dual_rate(policy, threads))
            progress.advance(task)
    return "\n".join(
        [
            "## Dual-rate inference, `small` flow preset",
            "",
            f"Each row runs {WINDOW_S:.0f} s. Synchronous: every step runs the whole model, as "
            "fast as it can. Dual-rate: the VLM refreshes in a background thread as fast as its "
            f"own time allows; the action expert runs at a fixed {EXPERT_HZ:.0f} Hz on the "
            "newest features. Jitter: |period - nominal period| (dual-rate: 20 ms; synchronous, "
            "which has no fixed rate: its median period). Feature age: median age of the "
            "features at each action. Target: expert >= 50 Hz with p99 jitter <= 2 ms.",
            "",
            "| mode | expert loop Hz | actions/s | jitter p50 ms | jitter p99 ms | feature age ms "
            "| VLM refresh Hz | missed deadlines |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "Real-time episodes (`run_episode(realtime=True)`: the simulated world runs on the "
            "wall clock and does not wait for the model), the sim's 2 cameras, same seeds: the "
            "share of control steps the arm spent holding still because no action was ready. "
            "Random weights, so success and task time are not compared.",
            "",
            "| mode | episodes x steps | holding | wall per episode |",
            "|---|---:|---:|---:|",
            *episodes,
        ]
    )

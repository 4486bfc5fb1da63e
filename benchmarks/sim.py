"""Simulation: physics and render speed, expert success over 100 seeds, episode wall time."""

import itertools
import time

from rich.progress import Progress

from benchmarks.common import time_calls
from vlarena.policies import PRESETS, FlowVLAPolicy
from vlarena.sim import ExpertController, FrankaWorld, PolicyController, run_episode
from vlarena.sim.world import COLORS

TASKS = [
    ("table", "touch the {a} cube"),
    ("table", "push the {a} cube to the left"),
    ("table", "push the {a} cube to the right"),
    ("table", "pick up the {a} cube"),
    ("table", "put the {a} cube on the {b} cube"),
    ("table", "put the {a} cube next to the {b} cube"),
    ("bin", "put the {a} cube in the bin"),
]
EXPERT_SEEDS = 100


def _speed(samples: int) -> list[str]:
    world = FrankaWorld("table")
    world.reset(0)
    hold = world.data.ctrl[:8].copy()
    hold[7] = 1.0
    control = time_calls(lambda: world.step(hold), samples)
    rows = [f"| control step (50 physics steps, 0.1 s simulated) | {control.p50:.2f} ms "
            f"| {50_000 / control.p50:,.0f} physics steps/s |"]  # fmt: skip
    for size in (96, 224):
        for camera in ("front", "wrist"):
            t = time_calls(lambda c=camera, s=size: world.render(c, s, s), samples)  # type: ignore[misc]
            rows.append(
                f"| render {camera} {size}x{size} | {t.p50:.2f} ms | {1000 / t.p50:.0f} fps |"
            )
    return rows


def _expert(progress: Progress) -> list[str]:
    pairs = list(itertools.permutations(COLORS, 2))
    task = progress.add_task("expert over 100 seeds", total=len(TASKS) * EXPERT_SEEDS)
    rows = []
    for scene, template in TASKS:
        world = FrankaWorld(scene)
        successes, steps = 0, 0
        for seed in range(EXPERT_SEEDS):
            a, b = pairs[seed % len(pairs)]
            episode = run_episode(world, ExpertController(), template.format(a=a, b=b), seed, 150)
            successes += bool(episode.success)
            steps += len(episode.steps)
            progress.advance(task)
        rows.append(f"| {scene} | {template} | {successes}/{EXPERT_SEEDS} "
                    f"| {steps / EXPERT_SEEDS:.0f} |")  # fmt: skip
    return rows


def _episodes(samples: int) -> list[str]:
    world = FrankaWorld("table")
    policy = FlowVLAPolicy.create(PRESETS["small"], "vla-flow-small")
    controller = PolicyController(policy.info, lambda o, s: policy.predict([o], [s])[0])
    rows = []
    for name, make in (("scripted expert", ExpertController), ("`small` flow (random weights)",
                                                                lambda: controller)):  # fmt: skip
        runs = max(3, samples // 10)
        started = time.perf_counter()
        for seed in range(runs):
            episode = run_episode(world, make(), "wave at the camera", seed, max_steps=50)
        wall = (time.perf_counter() - started) * 1000 / runs
        rows.append(f"| {name} | {len(episode.steps)} | {wall:.0f} ms |")
    return rows


def run(samples: int, progress: Progress) -> str:
    """Markdown section for the simulator."""
    return "\n".join([
        "## Simulation (MuJoCo, EGL offscreen, shadows/reflections/multisampling off)",
        "",
        "| what | p50 | rate |",
        "|---|---:|---:|",
        *_speed(samples),
        "",
        f"Scripted expert, {EXPERT_SEEDS} seeds per task (colours rotate over every ordered "
        "pair), up to 150 steps. Target >= 95 %.",
        "",
        "| scene | task | success | mean steps |",
        "|---|---|---:|---:|",
        *_expert(progress),
        "",
        "A 50-step episode in-process (free-form instruction, so it always runs all 50 steps; "
        "the policy renders 2 cameras at 96x96 and runs every 8 steps).",
        "",
        "| controller | steps | wall time per episode |",
        "|---|---:|---:|",
        *_episodes(samples),
    ])  # fmt: skip

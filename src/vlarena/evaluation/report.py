"""Evaluation results as per-task rows, JSON, a markdown table and a plot."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from vlarena.evaluation.harness import EpisodeResult
from vlarena.stats import wilson_interval


@dataclass(frozen=True)
class TaskSummary:
    """One task's figures."""

    task: str
    episodes: int
    successes: int
    success_rate: float
    ci_low: float  # Wilson 95% interval of the success rate
    ci_high: float
    correct_target_rate: float | None  # of episodes that acted on a cube: the named one first
    acted: int  # episodes that touched or moved any cube
    mean_steps: float  # mean episode length (successes end early)


def summarize(results: list[EpisodeResult]) -> list[TaskSummary]:
    """Per-task figures, tasks in the order they first appear."""
    tasks = list(dict.fromkeys(r.task for r in results))
    rows = []
    for task in tasks:
        mine = [r for r in results if r.task == task]
        wins = sum(r.success for r in mine)
        acted = [r.correct_target for r in mine if r.correct_target is not None]
        low, high = wilson_interval(wins, len(mine))
        rows.append(
            TaskSummary(
                task=task,
                episodes=len(mine),
                successes=wins,
                success_rate=wins / len(mine),
                ci_low=low,
                ci_high=high,
                correct_target_rate=sum(acted) / len(acted) if acted else None,
                acted=len(acted),
                mean_steps=sum(r.steps for r in mine) / len(mine),
            )
        )
    return rows


def markdown_table(model: str, rows: list[TaskSummary]) -> str:
    """A markdown table of the rows."""
    lines = [
        f"| {model} | success | 95% CI | correct target | mean steps |",
        "|---|---:|---|---:|---:|",
    ]
    for r in rows:
        target = (
            "-" if r.correct_target_rate is None else f"{r.correct_target_rate:.0%} ({r.acted})"
        )
        success = f"{r.successes}/{r.episodes} = {r.success_rate:.0%}"
        ci = f"{r.ci_low:.0%}-{r.ci_high:.0%}"
        lines.append(f"| {r.task} | {success} | {ci} | {target} | {r.mean_steps:.1f} |")
    return "\n".join(lines) + "\n"


def write_report(
    out: Path, model: str, results: list[EpisodeResult], config: dict[str, object]
) -> list[TaskSummary]:
    """results.json, results.md and success.png in `out`."""
    rows = summarize(results)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model,
        "config": config,
        "tasks": [asdict(r) for r in rows],
        "episodes": [{**asdict(r), "correct_target": r.correct_target} for r in results],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    (out / "results.md").write_text(markdown_table(model, rows), encoding="utf-8")
    plot_success(out / "success.png", model, rows)
    return rows


def plot_success(png: Path, model: str, rows: list[TaskSummary]) -> None:
    """Success rate per task with Wilson 95% error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    rates = [r.success_rate for r in rows]
    errors = [[r.success_rate - r.ci_low for r in rows], [r.ci_high - r.success_rate for r in rows]]
    ax.bar([r.task for r in rows], rates, yerr=errors, capsize=4, color="#4c72b0")
    ax.set(ylim=(0, 1.05), ylabel="success rate", title=f"{model}: success per task (95% CI)")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)

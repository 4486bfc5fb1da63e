"""docs/models.md from a `make ship` run: scores on both wording splits, targets, time, plots;
and each shipped checkpoint's card file (its evaluation, license and source, for model cards).

    python -m vlarena.evaluation.models_doc RUNS DOCS

RUNS is the ship run directory (times.txt, flow/, dagger<round>/, ar/,
eval/<model>-<wordings>/results.json);
DOCS the docs directory (models.md and img/ are written there).
"""

import json
import shutil
import sys
from datetime import date
from pathlib import Path

from vlarena import __license__
from vlarena.data.paraphrases import TASK_NAMES
from vlarena.evaluation.report import TaskSummary
from vlarena.policies.checkpoint import CARD_FILE
from vlarena.policies.shipped import SHIPPED, shipped_checkpoint

# The loss plot of each stage `make ship` may run: (run directory under RUNS, image under
# docs/img, caption); those whose run is there are shown.
LOSS_PLOTS = (
    ("flow/pretrain", "flow-pretrain-loss.png", "flow model, grounding pretraining"),
    ("flow/full", "flow-loss.png", "flow model, full stage"),
    *(
        (f"dagger{r}/full", f"flow-dagger{r}-loss.png", f"flow model, DAgger round {r}")
        for r in range(1, 4)
    ),
    ("ar/expert", "ar-head-loss.png", "AR head"),
    ("ar-dagger/expert", "ar-dagger-loss.png", "AR head, DAgger round on its own rollouts"),
)

# The competence the shipped models are held to: success per task, and correct target overall.
TARGETS: dict[str, tuple[dict[str, float], float]] = {
    "vla-flow-small": (
        {
            "touch": 0.95,
            "push_left": 0.8,
            "push_right": 0.8,
            "lift": 0.8,
            "stack": 0.6,
            "next_to": 0.6,
            "bin": 0.6,
        },
        0.95,
    ),
    "vla-ar-small": (
        {
            "touch": 0.85,
            "push_left": 0.6,
            "push_right": 0.6,
            "lift": 0.6,
            "stack": 0.4,
            "next_to": 0.4,
            "bin": 0.4,
        },
        0.90,
    ),
}
# (model, run) columns: eval/<model>-<run>/results.json; "reuse" is the trained wordings with
# features refreshed every 3 steps and actions from the fresh joint state every step.
COLUMNS = [
    ("scripted-expert", "trained"),
    ("vla-flow-small", "trained"),
    ("vla-flow-small", "held-out"),
    ("vla-flow-small", "reuse"),
    ("vla-ar-small", "trained"),
    ("vla-ar-small", "held-out"),
    ("random", "trained"),
]
LABELS = {
    ("random", "trained"): "random weights (vla-flow:film)",
    ("vla-flow-small", "reuse"): "vla-flow-small, features reused for 3 steps",
}
WORDING_GAP = 0.10  # held-out wordings must score within this of the trained ones


def load_rows(path: Path) -> dict[str, TaskSummary]:
    """The per-task summaries of one results.json, by task."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    return {row["task"]: TaskSummary(**row) for row in payload["tasks"]}


def _cell(row: TaskSummary | None) -> str:
    if row is None:
        return "-"
    target = "" if row.correct_target_rate is None else f"; target {row.correct_target_rate:.0%}"
    return (
        f"{row.successes}/{row.episodes} = {row.success_rate:.0%} "
        f"({row.ci_low:.0%}-{row.ci_high:.0%}){target}"
    )


def correct_target(rows: dict[str, TaskSummary]) -> tuple[int, int]:
    """(episodes whose first cube was the named one, episodes that acted on a cube), all tasks."""
    right = sum(round((r.correct_target_rate or 0.0) * r.acted) for r in rows.values())
    return right, sum(r.acted for r in rows.values())


def verdicts(results: dict[tuple[str, str], dict[str, TaskSummary]]) -> list[str]:
    """One line per shipped model: each target met or missed, and the wording gap."""
    lines = []
    for model, (floors, target_floor) in TARGETS.items():
        trained = results.get((model, "trained"))
        held = results.get((model, "held-out"))
        if trained is None:
            lines.append(f"- **{model}**: not evaluated.")
            continue
        missed = [f"{t} not evaluated" for t in floors if t not in trained]
        missed += [
            f"{t} {trained[t].success_rate:.0%} < {floor:.0%}"
            for t, floor in floors.items()
            if t in trained and trained[t].success_rate < floor
        ]
        right, acted = correct_target(trained)
        rate = right / acted if acted else 0.0
        if rate < target_floor:
            missed.append(f"correct target {rate:.0%} < {target_floor:.0%}")
        status = "meets every target" if not missed else "misses: " + ", ".join(missed)
        lines.append(
            f"- **{model}** {status} (correct target {right}/{acted} = {rate:.0%})"
            f"{_wording_gap(trained, held)}."
        )
    return lines


def _wording_gap(trained: dict[str, TaskSummary], held: dict[str, TaskSummary] | None) -> str:
    """Whether the held-out wordings score within WORDING_GAP of the trained ones, per task."""
    if held is None or set(held) != set(trained):
        return "; held-out wordings not evaluated on every task"
    # Rounded: 40/50 against 35/50 is exactly 10 points, not 10.000000000000009.
    drops = {t: round(trained[t].success_rate - held[t].success_rate, 9) for t in trained}
    gaps = [f"{t} ({drop * 100:.0f} points)" for t, drop in drops.items() if drop > WORDING_GAP]
    if not gaps:
        return "; held-out wordings within 10 points on every task"
    return "; held-out wordings more than 10 points lower on: " + ", ".join(gaps)


def plot(results: dict[tuple[str, str], dict[str, TaskSummary]], png: Path) -> None:
    """Success per task, one bar per (model, wording split), with Wilson 95% error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = [k for k in COLUMNS if k in results]
    fig, ax = plt.subplots(figsize=(10, 4.6), dpi=100)
    width = 0.8 / max(1, len(keys))
    for i, key in enumerate(keys):
        rows = [results[key].get(t) for t in TASK_NAMES]
        rates = [r.success_rate if r else 0.0 for r in rows]
        err = [
            [r.success_rate - r.ci_low if r else 0 for r in rows],
            [r.ci_high - r.success_rate if r else 0 for r in rows],
        ]
        label = LABELS.get(key, f"{key[0]} ({key[1]} wordings)")
        ax.bar(
            np.arange(len(TASK_NAMES)) + i * width, rates, width, yerr=err, capsize=2, label=label
        )
    ax.set_xticks(np.arange(len(TASK_NAMES)) + 0.4 - width / 2, TASK_NAMES)
    ax.set(ylim=(0, 1.05), ylabel="success rate", title="Success per task (95% CI)")
    ax.legend(fontsize=7, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def write(runs: Path, docs: Path) -> str:
    """Write docs/models.md and its pictures; returns the markdown."""
    results = {}
    for model, wordings in COLUMNS:
        path = runs / "eval" / f"{model}-{wordings}" / "results.json"
        if path.exists():
            results[(model, wordings)] = load_rows(path)
    img = docs / "img"
    img.mkdir(parents=True, exist_ok=True)
    plot(results, img / "shipped-success.png")
    plots = []
    for stage, name, caption in LOSS_PLOTS:
        if (runs / stage / "loss.png").exists():
            shutil.copy(runs / stage / "loss.png", img / name)
            plots.append(f"![{caption}: loss](img/{name})")
    times = runs / "times.txt"
    if not times.is_file():
        raise FileNotFoundError(f"{times} is missing: the stage times of a make ship run")
    lines = times.read_text(encoding="utf-8").splitlines()
    stage_times = [line.split() for line in lines if line.strip()]
    total_s = sum(int(t[1]) for t in stage_times)
    sizes = []
    for name in SHIPPED:
        checkpoint = shipped_checkpoint(name)
        if checkpoint is not None:
            meta = json.loads((checkpoint / "metadata.json").read_text(encoding="utf-8"))
            mb = sum(f.stat().st_size for f in checkpoint.iterdir()) / 1e6
            sizes.append(
                f"| `{name}` | {meta['policy_type']} | {mb:.1f} MB | "
                f"{meta.get('description', '')} |"
            )
    header = (
        "| task | "
        + " | ".join(
            LABELS.get((m, w), f"{m}, {w} wordings") for m, w in COLUMNS if (m, w) in results
        )
        + " |"
    )
    table = [header, "|---" * (1 + len(results)) + "|"]
    for task in TASK_NAMES:
        cells = [_cell(results[k].get(task)) for k in COLUMNS if k in results]
        table.append(f"| {task} | " + " | ".join(cells) + " |")
    targets = [
        "| correct target, all tasks | "
        + " | ".join("{}/{}".format(*correct_target(results[k])) for k in COLUMNS if k in results)
        + " |"
    ]
    text = TEMPLATE.format(
        day=date.today().isoformat(),
        sizes="\n".join(sizes),
        times="\n".join(f"| {t[0]} | {int(t[1]) / 60:.1f} min |" for t in stage_times),
        total=f"{total_s / 60:.1f}",
        table="\n".join(table + targets),
        verdicts="\n".join(verdicts(results)),
        plots="\n".join(plots),
        rounds=len(list(runs.glob("dagger*/full"))),
    )
    (docs / "models.md").write_text(text, encoding="utf-8")
    return text


TEMPLATE = """\
# Shipped models and their scores

Generated by `make ship` (scores: `make ship-eval`) on {day} (`python -m
vlarena.evaluation.models_doc`). The package ships two checkpoints trained from scratch on this
project's own simulated demonstrations; `make run` and the execution service serve them by
default. How they are built and why:
[design/shipped-models.md](design/shipped-models.md).

| model | family | on disk | trained |
|---|---|---:|---|
{sizes}

Both read the front and wrist cameras at 64x64 through a FiLM CNN conditioned on the
instruction's words, with the 9 joint positions and velocities, and return 8-action chunks
(7 joint targets + gripper, predicted relative to the current joints) at 10 Hz. The flow model
learns from the scripted expert's demonstrations, then in {rounds} DAgger rounds from the expert
taking over from the states the model itself reached (`vlarena dagger`). The AR model shares
the trunk of round 2's flow model and has its own token head, trained on the data of rounds 1
and 2, then in a round of its own; it decodes a chunk's 8 steps in one pass (parallel
decoding).

## Training time (2-core CPU, no GPU)

The wall time of each stage in the runs that made the shipped checkpoints; where stages ran on
different machines or shared the cores, the design note says so.

| stage | wall time |
|---|---:|
{times}
| **total** | **{total} min** |

{plots}

## Scores

`vlarena eval` on the fixed evaluation seeds (never used in training), step budgets 40 (touch),
50 (push), 60 (lift), 120 (stack, next to, bin). The model is asked at every control step and
each step runs the mean of the newest 8 chunks' predictions for it, from the 8th step on (temporal
ensembling, as ACT does; the arena's episodes run the same way). Success with Wilson 95% intervals;
"target": of the episodes in which the robot acted on a cube (touched it, came within 4.5 cm, or
moved it 1.5 cm), the share whose first cube was the named one. *Trained wordings* are the
paraphrases the demonstrations use; *held-out wordings* recombine their words in ways the data
never does, in mixed case and with punctuation (`--wordings held-out`). *Features reused*: the
dual-rate schedule in simulated time, vision-language features refreshed every third control
step and an action chunk from the fresh joint state at every step, ensembled like the others
(`--feature-reuse 3`).

{table}

![success per task](img/shipped-success.png)

## Against the targets

{verdicts}

## Reproduce

```bash
make ship      # datagen, both families, then make ship-eval
make ship-eval # the shipped checkpoints: eval on both wording splits, this page
vlarena eval --model vla-flow-small --episodes 50 --wordings held-out --out runs/eval/flow
```
"""


def write_cards(runs: Path) -> list[Path]:
    """Each shipped checkpoint's card file, from its evaluation on the trained wordings."""
    written = []
    for name in SHIPPED:
        checkpoint, results = shipped_checkpoint(name), runs / "eval" / f"{name}-trained"
        if checkpoint is None or not (results / "results.json").exists():
            continue
        payload = json.loads((results / "results.json").read_text(encoding="utf-8"))
        config = payload["config"]
        card = {
            "license": __license__,
            "source": "trained by VLArena's make ship (docs/models.md)",
            "evaluated": (
                f"vlarena eval: {config['episodes']} episodes per task on the fixed evaluation "
                f"seeds, {config['wordings']} wordings, horizon {config['horizon']}"
                + (", temporal ensembling" if config.get("ensemble") else "")
            ),
            "evaluation": payload["tasks"],
        }
        path = checkpoint / CARD_FILE
        path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    try:
        write(Path(sys.argv[1]), Path(sys.argv[2]))
    except FileNotFoundError as exc:
        sys.exit(f"error: {exc}")
    write_cards(Path(sys.argv[1]))

"""LeRobot checkpoints: latency per policy type, batching, and our server's overhead beside
LeRobot's own PolicyServer on the same checkpoint, measured in the LeRobot environment."""

import json
import os
import subprocess
import tempfile
from pathlib import Path

from rich.progress import Progress

LEROBOT_PYTHON = os.environ.get("VLA_LEROBOT_PYTHON", ".venv-lerobot/bin/python")


def _ms(value: float | None) -> str:
    return "fails" if value is None else f"{value:.1f}"


def _overhead(server: float | None, alone: float) -> str:
    return "—" if server is None else f"{server - alone:+.1f}"


def run(samples: int, progress: Progress) -> str:
    """Markdown section for LeRobot checkpoints."""
    task = progress.add_task("LeRobot checkpoints", total=1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lerobot.json"
        subprocess.run(
            [LEROBOT_PYTHON, "-m", "benchmarks.lerobot_env", "measure", str(out), str(samples)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        result = json.loads(out.read_text())
    progress.advance(task)
    lines = [
        "## LeRobot checkpoints",
        "",
        f"Tiny random-weight checkpoints made with LeRobot itself ({LEROBOT_PYTHON}, torch "
        f"{result['torch']}, CPU), two 64x64 cameras, 9 joints, 8 action values; medians of "
        f"{samples} calls. *Alone*: the policy in process, batch 1 (ours: our adapter; LeRobot: "
        "its preprocessor, `predict_action_chunk` and postprocessor). *Server*: one robot's round "
        "trip over loopback gRPC; each server runs in its own process. The overhead is the server "
        "round trip less the policy alone.",
        "",
        "| type | params | split API | alone, ours (ms) | batch of 4, ours (ms) "
        "| our server (ms) | our overhead (ms) | alone, LeRobot (ms) | LeRobot PolicyServer (ms) "
        "| its overhead (ms) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['type']} | {row['params']:,} | {'yes' if row['split'] else 'no'} "
            f"| {row['ours_alone_ms']:.1f} | {row['ours_batch4_ms']:.1f} "
            f"| {row['ours_server_ms']:.1f} "
            f"| {_overhead(row['ours_server_ms'], row['ours_alone_ms'])} "
            f"| {row['lerobot_alone_ms']:.1f} | {_ms(row['lerobot_server_ms'])} "
            f"| {_overhead(row['lerobot_server_ms'], row['lerobot_alone_ms'])} |"
        )
    full = result["full_smolvla"]
    lines += [
        "",
        f"Full-size SmolVLA (SmolVLM2-500M cut to 16 layers and its action expert, "
        f"{full['params'] / 1e6:.0f} M parameters, random weights: latency does not depend on "
        f"their values), one {full['image']}x{full['image']} observation with two cameras, batch "
        f"1, fp32 on this CPU: **{full['alone_ms'] / 1000:.2f} s** per chunk; the process peaked "
        f"at {full['rss_gb']:.1f} GB.",
    ]
    return "\n".join(lines)

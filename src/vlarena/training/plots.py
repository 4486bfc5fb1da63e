"""Pictures of training: the loss curve."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt


def plot_losses(log: Path, png: Path, title: str) -> None:
    """Loss against step (log scale) from a log.jsonl, saved as PNG."""
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], color="#1f77b4")
    ax.set(xlabel="step", ylabel="loss", title=title, yscale="log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)

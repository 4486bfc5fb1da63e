"""Checkpoints shipped inside the package (trained by `vlarena train`, see docs/models.md)."""

from pathlib import Path

SHIPPED_DIR = Path(__file__).parent / "checkpoints"
SHIPPED = ("vla-flow-small", "vla-ar-small")  # names, in the order `make run` serves them


def shipped_checkpoint(name: str) -> Path | None:
    """The directory of a shipped checkpoint, or None if `name` is not one."""
    path = SHIPPED_DIR / name
    return path if name in SHIPPED and (path / "metadata.json").is_file() else None


def shipped_checkpoints() -> list[Path]:
    """Every shipped checkpoint present in this installation."""
    return [p for p in map(shipped_checkpoint, SHIPPED) if p is not None]

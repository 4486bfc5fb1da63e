"""Tiny real LeRobot checkpoints, built once per session with LeRobot itself.

These tests run in the LeRobot environment (`make test` runs them there with
`.venv-lerobot/bin/pytest tests/policies/lerobot`); the main environment, which has no LeRobot,
does not collect them.
"""

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("lerobot") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    from vlarena.policies.lerobot import tiny

    @pytest.fixture(scope="session")
    def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
        """One tiny checkpoint of every supported type, by type."""
        root = tmp_path_factory.mktemp("lerobot")
        return {kind: tiny.build(kind, root / kind) for kind in tiny.TYPES}

    @pytest.fixture(autouse=True)
    def _tiny_pi() -> Iterator[None]:
        """pi0 and pi0.5 load at the tiny checkpoints' sizes (LeRobot knows only the real ones)."""
        with tiny.tiny_pi_sizes():
            yield

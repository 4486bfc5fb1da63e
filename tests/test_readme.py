"""The README's code examples run as written."""

import re
from pathlib import Path

import numpy as np
import pytest

from vlarena.arena.settings import ArenaSettings
from vlarena.broker import QueueSettings
from vlarena.policies import PRESETS, FlowVLAPolicy, registry

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block(after_heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(after_heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_using_a_policy_example(tmp_path: Path) -> None:
    FlowVLAPolicy.create(PRESETS["tiny"], "readme").save(tmp_path / "ckpt")
    code = _python_block("## Using a policy").replace("path/to/checkpoint", str(tmp_path / "ckpt"))
    scope: dict[str, object] = {}
    exec(code, scope)
    chunk = scope["chunk"]
    assert chunk.actions.shape == (PRESETS["tiny"].chunk_size, PRESETS["tiny"].action_dim)  # type: ignore[attr-defined]
    assert np.isfinite(chunk.actions).all()  # type: ignore[attr-defined]


def test_adding_a_model_example_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_POLICY_TYPES", dict(registry._POLICY_TYPES))
    scope: dict[str, object] = {}
    exec(_python_block("## Adding a model"), scope)
    assert registry.get_policy_type("my-model") is scope["MyPolicy"]


def test_every_arena_setting_is_documented() -> None:
    text = README.read_text(encoding="utf-8")
    for name, field in ArenaSettings.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None)
        env = str(aliases[0]) if aliases else f"VLA_ARENA_{name.upper()}"
        assert env in text or f"`_{name.upper()}`" in text, env


def test_every_queue_setting_is_documented() -> None:
    text = README.read_text(encoding="utf-8")
    for name in QueueSettings.model_fields:
        assert f"`VLA_QUEUE_{name.upper()}`" in text, name

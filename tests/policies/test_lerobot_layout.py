"""LeRobot checkpoint specs, recognised and checked without LeRobot."""

import json
import re
from pathlib import Path

import pytest

from vlarena.errors import CheckpointError, ConfigError
from vlarena.policies.lerobot.layout import LeRobotOptions, split_spec
from vlarena.policies.specs import parse_spec


def lerobot_dir(path: Path, kind: str = "smolvla") -> Path:
    """What LeRobot's save_pretrained leaves that the spec resolver looks at."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"type": kind}))
    (path / "policy_preprocessor.json").write_text("{}")
    return path


def test_a_lerobot_directory_is_a_lerobot_spec(tmp_path: Path) -> None:
    path = lerobot_dir(tmp_path / "smolvla_base")
    for text in (str(path), f"lerobot:{path}", f"{path}#name=my-smolvla&front=camera1"):
        spec = parse_spec(text)
        assert (spec.kind, spec.source) == ("lerobot", str(path))
    assert parse_spec(str(path)).name == "smolvla_base"
    assert parse_spec(f"{path}#name=my-smolvla&front=camera1").name == "my-smolvla"


def test_a_directory_named_with_a_hash(tmp_path: Path) -> None:
    path = lerobot_dir(tmp_path / "pi0#2")
    assert (parse_spec(str(path)).source, parse_spec(str(path)).options) == (str(path), "")
    spec = parse_spec(f"lerobot:{path}#name=two")
    assert (spec.source, spec.options) == (str(path), "name=two")


def test_our_checkpoints_and_other_names_are_not(tmp_path_factory: pytest.TempPathFactory) -> None:
    ours = lerobot_dir(tmp_path_factory.mktemp("ours") / "ckpt")
    (ours / "metadata.json").write_text("{}")
    assert split_spec(str(ours)) is None
    assert split_spec("vla-flow-small") is None
    assert split_spec("vla-flow:small") is None
    no_type = tmp_path_factory.mktemp("no-type")
    (no_type / "config.json").write_text("[1, 2]")
    (no_type / "policy_preprocessor.json").write_text("{}")
    assert split_spec(str(no_type)) is None
    with pytest.raises(
        CheckpointError, match=re.escape(f"'{no_type}' is not a LeRobot checkpoint")
    ):
        parse_spec(f"lerobot:{no_type}")


def test_options() -> None:
    options = LeRobotOptions.parse("front=top & wrist=hand&name=pi0-droid&embodiment=so100")
    assert options == LeRobotOptions("pi0-droid", "so100", (("front", "top"), ("wrist", "hand")))
    assert (options.our_camera("top"), options.our_camera("side")) == ("front", "side")
    assert LeRobotOptions.parse("") == LeRobotOptions()
    for bad, message in [
        ("front", "must be key=value"),
        ("front=", "must be key=value"),
        ("name=a&name=b", "given twice"),
        ("front=top&front=side", "given twice"),
        ("front=top&wrist=top", "maps a camera twice"),
        ("name=../etc", "not a valid name"),
        ("front=a b", "not a valid name"),
    ]:
        with pytest.raises(ConfigError, match=message):
            LeRobotOptions.parse(bad)


def test_bad_options_fail_when_the_spec_is_parsed(tmp_path: Path) -> None:
    path = lerobot_dir(tmp_path / "act", "act")
    with pytest.raises(ConfigError, match="must be key=value"):
        parse_spec(f"{path}#front")

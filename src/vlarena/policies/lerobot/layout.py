"""LeRobot pretrained-policy directories, recognised and configured without importing LeRobot.

A directory LeRobot's `save_pretrained` wrote holds `config.json` (with the policy `type`),
`model.safetensors`, and `policy_preprocessor.json` / `policy_postprocessor.json` with their
normalization stats. Ours hold `metadata.json` instead, so the two never look alike.

A spec names one as `lerobot:PATH[#OPTIONS]`, or as a plain PATH that holds one. OPTIONS are
`key=value` pairs joined by `&` (a comma separates specs in a list): `name=` (the model id;
default: the directory's name), `embodiment=` (the robot tag observations carry; default
franka), and `OURS=THEIRS` for each camera whose name differs, our camera name to the
checkpoint's (`front=top` feeds our `front` camera to the checkpoint's
`observation.images.top`).
"""

import json
import os.path
import re
from dataclasses import dataclass
from pathlib import Path

from vlarena.errors import CheckpointError, ConfigError, echo
from vlarena.policies.checkpoint import METADATA_FILE, small_file

PREFIX = "lerobot:"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "policy_preprocessor.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_OPTION_KEYS = ("name", "embodiment")


@dataclass(frozen=True)
class LeRobotOptions:
    """How a LeRobot checkpoint meets our robots: its id, embodiment and camera names."""

    name: str = ""  # the model id ("": the checkpoint directory's name)
    embodiment: str = "franka"  # the robot tag its observations carry
    cameras: tuple[tuple[str, str], ...] = ()  # (our camera, the checkpoint's camera) pairs

    def __post_init__(self) -> None:
        for label, value in (("name", self.name), ("embodiment", self.embodiment)):
            if value and not _NAME.match(value):
                raise ConfigError(f"lerobot option {label}={echo(value)} is not a valid name")
        ours = [o for o, _ in self.cameras]
        theirs = [t for _, t in self.cameras]
        if len(set(ours)) != len(ours) or len(set(theirs)) != len(theirs):
            raise ConfigError(f"lerobot camera map {dict(self.cameras)} maps a camera twice")

    @classmethod
    def parse(cls, text: str) -> "LeRobotOptions":
        """`key=value&...` as a spec's fragment writes them (ConfigError if malformed)."""
        fields: dict[str, str] = {}
        cameras: list[tuple[str, str]] = []
        for item in filter(None, (part.strip() for part in text.split("&"))):
            key, sep, value = (s.strip() for s in item.partition("="))
            if not sep or not key or not value:
                raise ConfigError(
                    f"lerobot option {echo(item)} must be key=value (name=, embodiment=, or "
                    "OUR_CAMERA=CHECKPOINT_CAMERA)"
                )
            if key in fields or any(key == ours for ours, _ in cameras):
                raise ConfigError(f"lerobot option {key!r} is given twice")
            if key in _OPTION_KEYS:
                fields[key] = value
            else:
                for camera in (key, value):
                    if not _NAME.match(camera):
                        raise ConfigError(f"camera name {echo(camera)} is not a valid name")
                cameras.append((key, value))
        return cls(cameras=tuple(cameras), **fields)

    def our_camera(self, theirs: str) -> str:
        """Our name for the checkpoint's camera `theirs` (the same name unless mapped)."""
        return next((o for o, t in self.cameras if t == theirs), theirs)


def split_spec(text: str) -> tuple[str, str] | None:
    """(directory, options) if `text` names a LeRobot checkpoint, else None.

    `lerobot:PATH[#OPTIONS]` always does (CheckpointError if PATH holds none); a plain
    `PATH[#OPTIONS]` does when PATH holds one.
    """
    explicit = text.startswith(PREFIX)
    whole = text.removeprefix(PREFIX)
    if is_checkpoint(Path(whole)):  # a directory whose name holds '#'
        return whole, ""
    path, sep, options = whole.rpartition("#")  # options hold no "#"; a path may
    if not sep:
        path = whole
    if is_checkpoint(Path(path)):
        return path, options
    if explicit:
        raise CheckpointError(
            f"{echo(path)} is not a LeRobot checkpoint directory (config.json with a policy "
            "'type', model.safetensors and policy_preprocessor.json)"
        )
    return None


def is_checkpoint(directory: Path) -> bool:
    """Whether `directory` looks like a LeRobot pretrained-policy directory."""
    try:
        # Ours hold a metadata file; a LeRobot directory has none.
        if not os.path.isdir(directory) or (directory / METADATA_FILE).exists():
            return False
        return (directory / PREPROCESSOR_FILE).is_file() and "type" in _config(directory)
    except (OSError, ValueError):  # unreadable, or a name too long to be a path: not one
        return False


def policy_type(directory: Path) -> str:
    """The LeRobot policy type a checkpoint's config.json names (CheckpointError if none)."""
    kind = _config(directory).get("type")
    if not isinstance(kind, str) or not kind:
        raise CheckpointError(f"{directory / CONFIG_FILE} names no policy 'type'")
    return kind


def _config(directory: Path) -> dict[str, object]:
    """Its config.json as a JSON object ({} if missing, too large or not an object)."""
    try:
        config = json.loads(small_file(directory / CONFIG_FILE))
    except (CheckpointError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}

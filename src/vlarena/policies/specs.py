"""Model specs: the one resolver from a name a user types to a policy.

A spec is one of
- a shipped checkpoint's name (`vla-flow-small`);
- a checkpoint directory (`runs/flow/full/checkpoint`);
- a LeRobot pretrained-policy directory, `[lerobot:]PATH[#OPTIONS]` (`vlarena.policies.lerobot`;
  loading one needs LeRobot, which the LeRobot environment has);
- `TYPE:PRESET`, a native family at a size preset with random weights (`vla-flow:small`);
- a model of a remote inference server, `grpc://HOST:PORT[/MODEL]` (the server's default model
  without one);
- a server of openpi's websocket protocol, `ws://HOST:PORT[/PATH][#PROFILE]` (or `wss://`): the
  path goes to the server (ours reads `/PROFILE/MODEL` from it), the fragment names the
  observation profile to send (default: the one the server states, else native).
Remote specs need a `connect` function from the transport layer (`vlarena.serving.remote`),
which this layer does not import.
"""

import os.path
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from vlarena.errors import ConfigError, UnknownNameError, echo
from vlarena.policies.base import Policy
from vlarena.policies.checkpoint import read_metadata
from vlarena.policies.config import get_preset
from vlarena.policies.device import DeviceConfig
from vlarena.policies.lerobot.layout import LeRobotOptions, split_spec
from vlarena.policies.native import native_policy_types, random_native
from vlarena.policies.registry import load_policy
from vlarena.policies.shipped import shipped_checkpoint

REMOTE_SCHEME = "grpc://"
OPENPI_SCHEMES = ("ws://", "wss://")
SpecKind = Literal["shipped", "checkpoint", "lerobot", "preset", "remote", "openpi"]
REMOTE_KINDS = ("remote", "openpi")
REMOTE_PREFIXES = (REMOTE_SCHEME, *OPENPI_SCHEMES)  # how a remote spec starts


@dataclass(frozen=True)
class ModelSpec:
    """A parsed, checked model spec; nothing is loaded until `resolve_policy`."""

    kind: SpecKind
    source: str  # checkpoint directory, TYPE:PRESET, HOST:PORT, or the websocket URL
    model: str = ""  # remote: the served model's name ("" for the server's default)
    profile: str = ""  # openpi: the observation profile ("" for the server's, else native)
    options: str = ""  # lerobot: the options after `#` (name, embodiment, camera map)

    @property
    def name(self) -> str:
        """The model id it will have (remote: as the server names it; known once connected)."""
        if self.kind == "preset":
            return self.source.replace(":", "-") + "-random"
        if self.kind in REMOTE_KINDS:
            return self.model
        if self.kind == "lerobot":
            return LeRobotOptions.parse(self.options).name or Path(self.source).resolve().name
        return read_metadata(Path(self.source)).name


def parse_spec(text: str) -> ModelSpec:
    """Check a spec without loading anything (UnknownNameError, CheckpointError, ConfigError)."""
    if text.startswith(REMOTE_SCHEME):
        target, _, model = text.removeprefix(REMOTE_SCHEME).partition("/")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"remote spec {echo(text)} must be {REMOTE_SCHEME}HOST:PORT[/MODEL]")
        return ModelSpec("remote", target, model)
    if text.startswith(OPENPI_SCHEMES):
        return _openpi_spec(text)
    shipped = shipped_checkpoint(text)
    if shipped is not None:
        return ModelSpec("shipped", str(shipped))
    lerobot = split_spec(text)
    if lerobot is not None:
        path, options = lerobot
        LeRobotOptions.parse(options)
        return ModelSpec("lerobot", path, options=options)
    kind, _, preset = text.partition(":")
    if preset and ":" not in preset and "/" not in kind and not os.path.exists(text):
        natives = native_policy_types()
        if kind not in natives:
            raise UnknownNameError("native policy type", kind, natives)
        get_preset(preset)
        return ModelSpec("preset", text)
    read_metadata(Path(text))
    return ModelSpec("checkpoint", text)


def _openpi_spec(text: str) -> ModelSpec:
    url, _, profile = text.partition("#")
    parts = urlsplit(url)
    try:
        has_port = parts.port is not None
    except ValueError:  # not a number, or out of range
        has_port = False
    if not parts.hostname or not has_port:
        raise ConfigError(f"openpi spec {echo(text)} must be ws://HOST:PORT[/PATH][#PROFILE]")
    return ModelSpec("openpi", url, profile=profile)


Connect = Callable[[ModelSpec], Policy]  # opens a remote spec (the transport layer's client)


def resolve_policy(
    spec: str | ModelSpec, device: DeviceConfig | None = None, connect: Connect | None = None
) -> Policy:
    """The policy a spec names, loaded (or connected) now."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.kind in REMOTE_KINDS:
        if connect is None:
            raise ConfigError(f"remote models ({parsed.kind}) cannot be used here")
        return connect(parsed)
    if parsed.kind == "preset":
        kind, preset = parsed.source.split(":")
        return random_native(kind, preset, device)
    if parsed.kind == "lerobot":
        return _load_lerobot(parsed, device or DeviceConfig())
    return load_policy(parsed.source, device)


def _load_lerobot(spec: ModelSpec, device: DeviceConfig) -> Policy:
    try:
        from vlarena.policies.lerobot import adapter
    except ImportError as exc:
        raise ConfigError(
            f"{spec.source} is a LeRobot checkpoint, and LeRobot cannot be imported here ({exc}); "
            "serve it from the LeRobot environment (make install-lerobot; "
            ".venv-lerobot/bin/vlarena serve) and use it as grpc://HOST:PORT/MODEL"
        ) from None
    return adapter.load(spec.source, LeRobotOptions.parse(spec.options), device)

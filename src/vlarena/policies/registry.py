"""Policy implementations registered by name, and loading any checkpoint by its metadata."""

from pathlib import Path
from typing import TypeVar

from vlarena.errors import UnknownNameError
from vlarena.policies.base import CheckpointPolicy, Policy
from vlarena.policies.checkpoint import read_metadata
from vlarena.policies.device import DeviceConfig

_POLICY_TYPES: dict[str, type[CheckpointPolicy]] = {}
P = TypeVar("P", bound=type[CheckpointPolicy])


def register_policy(cls: P) -> P:
    """Class decorator: make a Policy implementation loadable under its `policy_type`."""
    name = cls.policy_type
    if _POLICY_TYPES.get(name, cls) is not cls:
        raise ValueError(f"policy type {name!r} is already registered")
    _POLICY_TYPES[name] = cls
    return cls


def policy_types() -> list[str]:
    """Names of every registered policy implementation."""
    return sorted(_POLICY_TYPES)


def get_policy_type(name: str) -> type[CheckpointPolicy]:
    """The implementation registered as `name`; unknown names list the valid ones."""
    try:
        return _POLICY_TYPES[name]
    except KeyError:
        raise UnknownNameError("policy type", name, _POLICY_TYPES) from None


def load_policy(path: str | Path, device: DeviceConfig | None = None) -> Policy:
    """Load any checkpoint directory with the implementation its metadata names."""
    directory = Path(path)
    meta = read_metadata(directory)
    return get_policy_type(meta.policy_type).load(directory, device or DeviceConfig())

"""The model-agnostic policy layer: base classes, registry, checkpoints and native VLAs."""

from vlarena.policies.base import Policy, Seeds, SplitPolicy, VLFeatures
from vlarena.policies.config import PRESETS, BackboneConfig, ExpertConfig, VLAConfig, get_preset
from vlarena.policies.device import DeviceConfig
from vlarena.policies.native import (
    AutoregressiveVLAPolicy,
    FlowVLAPolicy,
    NativeVLAPolicy,
    native_policy_types,
    random_native,
)
from vlarena.policies.normalization import NormStats
from vlarena.policies.registry import get_policy_type, load_policy, policy_types

__all__ = [
    "PRESETS",
    "AutoregressiveVLAPolicy",
    "BackboneConfig",
    "DeviceConfig",
    "ExpertConfig",
    "FlowVLAPolicy",
    "NativeVLAPolicy",
    "NormStats",
    "Policy",
    "Seeds",
    "SplitPolicy",
    "VLAConfig",
    "VLFeatures",
    "get_policy_type",
    "get_preset",
    "load_policy",
    "native_policy_types",
    "policy_types",
    "random_native",
]

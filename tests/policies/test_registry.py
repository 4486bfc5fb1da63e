"""Registry, presets and device configuration: helpful errors listing the valid names."""

from typing import Any

import pytest

from vlarena import ConfigError, UnknownNameError
from vlarena.policies import (
    AutoregressiveVLAPolicy,
    DeviceConfig,
    FlowVLAPolicy,
    get_policy_type,
    get_preset,
    policy_types,
)
from vlarena.policies.registry import register_policy


def test_native_families_are_registered() -> None:
    assert {"vla-flow", "vla-ar"} <= set(policy_types())
    assert get_policy_type("vla-flow") is FlowVLAPolicy
    assert get_policy_type("vla-ar") is AutoregressiveVLAPolicy


def test_unknown_policy_type_lists_names() -> None:
    with pytest.raises(UnknownNameError) as err:
        get_policy_type("openvla")
    assert str(err.value) == "unknown policy type 'openvla'; valid: vla-ar, vla-flow"
    assert err.value.valid == ["vla-ar", "vla-flow"]


def test_registering_a_second_class_under_a_taken_name_fails() -> None:
    class Impostor(FlowVLAPolicy):
        policy_type = "vla-flow"

    with pytest.raises(ValueError, match="already registered"):
        register_policy(Impostor)
    assert register_policy(FlowVLAPolicy) is FlowVLAPolicy  # re-registering is harmless


def test_unknown_preset_lists_names() -> None:
    with pytest.raises(
        UnknownNameError,
        match="unknown preset 'huge'; valid: film, film-tiny, pi0-scale, small, tiny",
    ):
        get_preset("huge")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"precision": "fp8"}, UnknownNameError, "valid: bf16, fp16, fp32"),
        ({"device": "tpu"}, ConfigError, "invalid device 'tpu'"),
        ({"device": "cuda"}, ConfigError, "CUDA is not available"),
        ({"device": "cuda:1"}, ConfigError, "CUDA is not available"),
        ({"device": "mps"}, ConfigError, "MPS is not available"),
    ],
)
def test_device_config_errors(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        DeviceConfig(**kwargs)


def test_auto_device_resolves_to_cpu_here() -> None:
    assert DeviceConfig(device="auto").torch_device().type == "cpu"

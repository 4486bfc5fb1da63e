"""Runtime: how policies are driven (batching, warm-up); knows policies, not transports."""

from vlarena.runtime.batching import DynamicBatcher, Place
from vlarena.runtime.dualrate import (
    DualRateConfig,
    DualRateRuntime,
    ExpertOutput,
    Features,
    LoopReport,
    run_loop,
)
from vlarena.runtime.sensors import SensorRing
from vlarena.runtime.warmup import warmup

__all__ = [
    "DualRateConfig",
    "DualRateRuntime",
    "DynamicBatcher",
    "ExpertOutput",
    "Features",
    "LoopReport",
    "Place",
    "SensorRing",
    "run_loop",
    "warmup",
]

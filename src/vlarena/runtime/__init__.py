"""Runtime: how policies are driven (batching, warm-up); knows policies, not transports."""

from vlarena.runtime.batching import DynamicBatcher, Served
from vlarena.runtime.warmup import warmup

__all__ = ["DynamicBatcher", "Served", "warmup"]

"""Profiling the two stages of a split policy (`vlarena profile`): timings per number of
camera views, and the dual-rate settings they call for."""

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from vlarena.policies import NativeVLAPolicy, VLAConfig
from vlarena.policies.synthetic import synthetic_observation

HEADROOM = 1.15  # schedule refreshes 15 % slower than the p95 feature time


def _timings(fn: Callable[[], object], samples: int) -> dict[str, float]:
    fn()  # warm-up
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000.0)
    return {"mean_ms": float(np.mean(times)), "p95_ms": float(np.percentile(times, 95))}


def profile(
    family: type[NativeVLAPolicy],
    config: VLAConfig,
    views: Sequence[int],
    samples: int = 50,
    action_expert_hz: float = 10.0,
    sensor_hz: float = 650.0,
) -> dict[str, Any]:
    """Timings of both stages for each view count, with recommended dual-rate settings."""
    results = []
    for n in views:
        cameras = tuple(f"view{i}" for i in range(n))
        backbone = dataclasses.replace(config.backbone, camera_names=cameras)
        policy = family.create(dataclasses.replace(config, backbone=backbone), f"{n}-views")
        obs = synthetic_observation(policy.info)
        features = policy.extract_features([obs])
        vlm = _timings(partial(policy.extract_features, [obs]), samples)
        expert = _timings(partial(policy.predict_from_features, features, [obs.state]), samples)
        vlm_hz = 1000.0 / (vlm["p95_ms"] * HEADROOM)
        expert_hz = min(action_expert_hz, 1000.0 / expert["p95_ms"])
        results.append(
            {
                "views": n,
                "feature_extraction": vlm | {"achievable_hz": 1000.0 / vlm["mean_ms"]},
                "action_expert": expert | {"achievable_hz": 1000.0 / expert["mean_ms"]},
                "recommended": {
                    "vlm_update_hz": round(vlm_hz, 2),
                    "action_expert_hz": round(expert_hz, 2),
                    "vlm_reuse_count": max(1, math.ceil(expert_hz / vlm_hz)),
                    "sensor_window": max(1, round(sensor_hz / expert_hz)),
                },
            }
        )
    return {
        "model": f"{family.policy_type}",
        "samples": samples,
        "sensor_hz": sensor_hz,
        "views": results,
    }

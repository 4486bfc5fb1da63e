"""Warm-up: run a policy once on every batch size it will see, before taking traffic."""

from vlarena.policies import Policy
from vlarena.policies.synthetic import synthetic_observation


def warmup(policy: Policy, max_batch: int) -> None:
    """Dummy inference at batch sizes 1..max_batch (allocators, kernels and caches get built)."""
    observations = [synthetic_observation(policy.info, seed=i) for i in range(max_batch)]
    for size in range(1, max_batch + 1):
        policy.predict(observations[:size], seeds=[0] * size)

"""DynamicBatcher on a real tiny policy: batching, failure isolation, warm-up, drain."""

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from vlarena.errors import UnavailableError
from vlarena.policies import PRESETS, FlowVLAPolicy
from vlarena.policies.base import Seeds
from vlarena.policies.synthetic import synthetic_observation
from vlarena.runtime import DynamicBatcher, warmup
from vlarena.types import ActionChunk, Observation


class MisbehavingPolicy(FlowVLAPolicy):
    """Misbehaves on its first call only (`fault`: "raise" or "short"), then works."""

    fault = "raise"
    misbehaved = False

    def predict(
        self, observations: Sequence[Observation], seeds: Seeds = None
    ) -> list[ActionChunk]:
        if self.misbehaved:
            return super().predict(observations, seeds)
        self.misbehaved = True
        if self.fault == "raise":
            raise RuntimeError("device hiccup")  # like a device hiccup
        return []  # a broken implementation must not kill the batcher


class FlakyPolicy(MisbehavingPolicy):
    fault = "raise"


class ShortPolicy(MisbehavingPolicy):
    fault = "short"


def make(policy: FlowVLAPolicy, **kwargs: float) -> DynamicBatcher:
    options = {"max_batch": 4, "max_delay_s": 0.05, "max_queue": 16} | kwargs
    return DynamicBatcher(policy, ThreadPoolExecutor(1), **options)  # type: ignore[arg-type]


async def test_requests_within_the_delay_share_a_batch() -> None:
    policy = FlowVLAPolicy.create(PRESETS["tiny"], "b")
    batcher = make(policy)
    batcher.start()
    deadline = asyncio.get_running_loop().time() + 10
    obs = [synthetic_observation(policy.info, seed=i) for i in range(6)]
    served = await asyncio.gather(*(batcher.submit(o, i, deadline) for i, o in enumerate(obs)))
    assert sorted(s.batch_size for s in served) == [2, 2, 4, 4, 4, 4]
    for i, s in enumerate(served):  # each answer belongs to its own observation and seed
        expected = policy.predict([obs[i]], seeds=[i])[0].actions
        np.testing.assert_allclose(s.actions, expected, atol=1e-5)
    await batcher.close()


async def test_a_failed_batch_fails_its_requests_only() -> None:
    policy = FlakyPolicy.create(PRESETS["tiny"], "flaky")
    batcher = make(policy, max_delay_s=0.0)
    batcher.start()
    deadline = asyncio.get_running_loop().time() + 10
    obs = synthetic_observation(policy.info)
    with pytest.raises(RuntimeError, match="device hiccup"):
        await batcher.submit(obs, 0, deadline)
    assert (await batcher.submit(obs, 0, deadline)).actions.shape == (4, 8)
    await batcher.close()


async def test_a_wrong_number_of_chunks_fails_the_batch_not_the_loop() -> None:
    policy = ShortPolicy.create(PRESETS["tiny"], "short")
    batcher = make(policy, max_delay_s=0.0)
    batcher.start()
    deadline = asyncio.get_running_loop().time() + 10
    obs = synthetic_observation(policy.info)
    with pytest.raises(RuntimeError, match="returned 0 chunks for 1"):
        await batcher.submit(obs, 0, deadline)
    assert (await batcher.submit(obs, 0, deadline)).batch_size == 1
    await batcher.close()


async def test_close_drains_then_refuses() -> None:
    policy = FlowVLAPolicy.create(PRESETS["tiny"], "d")
    batcher = make(policy)
    batcher.start()
    deadline = asyncio.get_running_loop().time() + 10
    pending = asyncio.create_task(batcher.submit(synthetic_observation(policy.info), 0, deadline))
    await asyncio.sleep(0)
    await batcher.close()
    assert (await pending).batch_size == 1
    with pytest.raises(UnavailableError, match="shutting down"):
        await batcher.submit(synthetic_observation(policy.info), 0, deadline)


def test_warmup_runs_every_batch_size() -> None:
    policy = FlowVLAPolicy.create(PRESETS["tiny"], "w")
    sizes: list[int] = []
    original = policy.predict

    def counting(obs: Sequence[Observation], seeds: Seeds = None) -> list[ActionChunk]:
        sizes.append(len(obs))
        return original(obs, seeds)

    policy.predict = counting  # type: ignore[method-assign, assignment]
    warmup(policy, 3)
    assert sizes == [1, 2, 3]

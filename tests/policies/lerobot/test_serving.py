"""LeRobot checkpoints served by our gRPC server over loopback: dynamic batching, the dual-rate
stream on pi0, and simulated episodes on the Panda."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from vlarena.policies import Policy
from vlarena.policies.lerobot import tiny
from vlarena.policies.specs import parse_spec, resolve_policy
from vlarena.policies.synthetic import synthetic_observation
from vlarena.serving.client import AsyncVLAClient, ClientOptions
from vlarena.serving.remote import connect
from vlarena.serving.server import InferenceServer
from vlarena.serving.settings import ServerSettings
from vlarena.sim import (
    Episode,
    FeatureReuseController,
    FrankaWorld,
    PolicyController,
    run_episode,
)
from vlarena.types import Observation


@pytest.fixture
async def server(checkpoints: dict[str, Path]) -> AsyncIterator[InferenceServer]:
    policies = [resolve_policy(str(checkpoints[kind])) for kind in tiny.TYPES]
    settings = ServerSettings(
        grpc_port=0, metrics_port=0, batch_size=4, max_queue_delay_ms=50, drain_timeout_s=1
    )
    running = InferenceServer(settings, policies=policies)
    await running.start()
    await running.wait_ready()  # warm-up ran every model
    yield running
    await running.stop(grace_s=0)


@pytest.mark.parametrize("kind", tiny.TYPES)
async def test_concurrent_requests_are_batched(server: InferenceServer, kind: str) -> None:
    async with AsyncVLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as client:
        info = await client.model_info(kind)
        assert info.policy_type == f"lerobot-{kind}"
        observations = [synthetic_observation(info, seed=i) for i in range(4)]
        chunks = await asyncio.gather(*(client.predict(o, model=kind) for o in observations))
    assert max(c.batch_size for c in chunks) > 1  # one LeRobot call served several robots
    assert all(c.model_id == kind and np.isfinite(c.actions).all() for c in chunks)
    assert all(c.actions.shape == (info.chunk_size, 8) for c in chunks)
    assert all({"policy", "queue", "server", "round_trip"} <= set(c.timing_ms) for c in chunks)


async def test_pi0_runs_dual_rate(server: InferenceServer) -> None:
    async with AsyncVLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as client:
        info = await client.model_info("pi0")
        assert info.supports_split

        async def observations() -> AsyncIterator[Observation]:
            for i in range(10):
                yield synthetic_observation(info, seed=i)
                await asyncio.sleep(0.05)

        replies = [c async for c in client.stream(observations(), model="pi0", dual_rate=True)]
    assert len(replies) >= 5
    assert all(r.feature_version >= 1 for r in replies)
    assert replies[-1].feature_version > replies[0].feature_version  # refreshed in the background


async def test_a_simulated_episode_over_grpc(server: InferenceServer) -> None:
    def simulate() -> Episode:  # the client is synchronous: off the server's event loop
        remote: Policy = connect(parse_spec(f"grpc://127.0.0.1:{server.port}/smolvla"))
        try:
            controller = PolicyController(remote)
            return run_episode(FrankaWorld("table"), controller, "touch the red cube", 3, 12)
        finally:
            remote.close()

    episode = await asyncio.to_thread(simulate)
    assert (episode.model_id, len(episode.steps)) == ("smolvla", 12)
    assert not episode.success  # random weights


def test_pi0_drives_the_panda_on_cached_features(checkpoints: dict[str, Path]) -> None:
    policy = resolve_policy(str(checkpoints["pi0"]))
    controller = FeatureReuseController(policy, policy.info, reuse=3)  # type: ignore[arg-type]
    episode = run_episode(FrankaWorld("table"), controller, "pick up the blue cube", 5, 9)
    assert len(episode.steps) == 9
    assert len({tuple(s.action) for s in episode.steps}) > 1

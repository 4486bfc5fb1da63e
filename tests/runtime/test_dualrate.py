"""Dual-rate runtime: deterministic scheduling on a fake clock, staleness rules, real threads."""

import json
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlarena.errors import ConfigError, DeadlineExceededError, InvalidObservationError
from vlarena.policies import PRESETS, FlowVLAPolicy
from vlarena.policies.synthetic import synthetic_observation
from vlarena.runtime import DualRateConfig, DualRateRuntime, ExpertOutput, SensorRing, run_loop


class FakeClock:
    """Time that only moves when told to (or when the loop sleeps)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class ManualExecutor(Executor):
    """Runs submitted work only when the test says so."""

    def __init__(self) -> None:
        self.queue: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.queue.append((future, fn, args))
        return future

    def run_all(self) -> None:
        while self.queue:
            future, fn, args = self.queue.pop(0)
            future.set_result(fn(*args))


class ImmediateExecutor(ManualExecutor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args)
        self.run_all()
        return future


@pytest.fixture(scope="module")
def policy() -> FlowVLAPolicy:
    return FlowVLAPolicy.create(PRESETS["tiny"], "tiny")


def runtime(
    policy: FlowVLAPolicy, clock: FakeClock, executor: Executor, **config: Any
) -> DualRateRuntime:
    return DualRateRuntime(policy, DualRateConfig(**config), clock=clock, executor=executor)


def test_refresh_schedule_versions_and_age(policy: FlowVLAPolicy) -> None:
    clock, executor = FakeClock(), ManualExecutor()
    rt = runtime(policy, clock, executor, vlm_update_hz=2.0)
    obs = synthetic_observation(policy.info)
    assert rt.should_start_vlm_update()
    assert rt.start_vlm_update(obs)
    assert not rt.start_vlm_update(obs)  # one refresh at a time
    assert not rt.should_start_vlm_update()
    clock.now = 0.3
    executor.run_all()
    out = rt.predict_action(obs.state, seed=0)
    assert out.chunk is not None
    assert (out.chunk.feature_version, out.chunk.feature_age_ms, out.stale) == (1, 300.0, False)
    assert not rt.should_start_vlm_update()  # 0.3 s < 1 / 2 Hz since the last start
    clock.now = 0.5
    assert rt.should_start_vlm_update()
    rt.start_vlm_update(obs)
    executor.run_all()
    assert _version(rt.predict_action(obs.state)) == 2


def test_actions_use_the_latest_state_with_cached_features(policy: FlowVLAPolicy) -> None:
    clock, executor = FakeClock(), ImmediateExecutor()
    rt = runtime(policy, clock, executor)
    obs = synthetic_observation(policy.info)
    rt.start_vlm_update(obs)
    moved = synthetic_observation(policy.info, seed=9).state
    a = rt.predict_action(obs.state, seed=0).chunk
    b = rt.predict_action(moved, seed=0).chunk
    assert a is not None
    assert b is not None
    assert not np.array_equal(a.actions, b.actions)
    expected = policy.predict([obs], seeds=[0])[0].actions
    np.testing.assert_allclose(a.actions, expected, atol=1e-5)  # same as synchronous


def test_stale_features_use_hold_and_wait(policy: FlowVLAPolicy) -> None:
    obs = synthetic_observation(policy.info)
    for rule in ("use", "hold"):
        clock, executor = FakeClock(), ImmediateExecutor()
        rt = runtime(policy, clock, executor, max_feature_age_s=1.0, stale=rule)
        rt.start_vlm_update(obs)
        fresh = rt.predict_action(obs.state, seed=0)
        clock.now = 1.5
        late = rt.predict_action(obs.state, seed=1)
        assert late.stale
        assert late.held == (rule == "hold")
        assert (late.chunk is fresh.chunk) == (rule == "hold")
    manual, later = ManualExecutor(), FakeClock()
    rt = runtime(policy, later, manual, max_feature_age_s=1.0, stale="wait", wait_timeout_s=0.05)
    rt.start_vlm_update(obs)
    manual.run_all()
    later.now = 2.0
    with pytest.raises(DeadlineExceededError):
        rt.predict_action(obs.state)  # nothing fresher arrives within the timeout


def test_cold_start_idle_or_wait(policy: FlowVLAPolicy) -> None:
    obs = synthetic_observation(policy.info)
    idle = runtime(policy, FakeClock(), ManualExecutor(), cold_start="idle")
    out = idle.predict_action(obs.state)
    assert out.chunk is None
    waiting = runtime(policy, FakeClock(), ManualExecutor(), wait_timeout_s=0.05)
    with pytest.raises(DeadlineExceededError):
        waiting.predict_action(obs.state)


async def test_astep_awaits_a_cold_start_and_honours_idle(policy: FlowVLAPolicy) -> None:
    obs = synthetic_observation(policy.info)
    idle = runtime(policy, FakeClock(), ManualExecutor(), cold_start="idle")
    out = await idle.astep(obs.state, lambda: obs)
    assert (out.chunk, out.refreshed) == (None, True)  # a refresh started; no action yet
    stuck = runtime(policy, FakeClock(), ManualExecutor(), wait_timeout_s=0.05)
    with pytest.raises(DeadlineExceededError, match="first features"):
        await stuck.astep(obs.state, lambda: obs)  # the refresh never lands: the default bound
    ready = runtime(policy, FakeClock(), ImmediateExecutor())
    out = await ready.astep(obs.state, lambda: obs, seed=0)
    assert out.chunk is not None
    assert out.chunk.feature_version == 1


def test_fixed_rate_loop_on_a_fake_clock(policy: FlowVLAPolicy) -> None:
    clock = FakeClock()
    rt = runtime(policy, clock, ImmediateExecutor(), vlm_update_hz=2.0, action_expert_hz=10.0)
    obs = synthetic_observation(policy.info)
    report = run_loop(rt, lambda: obs, duration_s=1.0, sleep=clock.sleep, clock=clock)
    assert len(report.outputs) == 10
    assert rt.stats.refreshes == 2  # at t=0 and t=0.5
    assert [_version(o) for o in report.outputs] == [1] * 5 + [2] * 5
    assert report.jitter_ms(99) == pytest.approx(0.0, abs=1e-9)
    assert report.actions_per_s == pytest.approx(10 * PRESETS["tiny"].chunk_size)


@pytest.mark.slow
def test_real_threads_keep_the_expert_rate(policy: FlowVLAPolicy) -> None:
    rt = DualRateRuntime(policy, DualRateConfig(vlm_update_hz=5.0, action_expert_hz=20.0))
    obs = synthetic_observation(policy.info)
    try:
        report = run_loop(rt, lambda: obs, duration_s=1.0)
    finally:
        rt.close()
    assert len(report.outputs) >= 12  # generous: 20 expected
    assert _version(report.outputs[-1]) >= 2
    assert rt.stats.refreshes >= 2


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="stale must be"):
        DualRateConfig(stale="panic")
    with pytest.raises(ConfigError, match="cold_start"):
        DualRateConfig(cold_start="guess")
    with pytest.raises(ConfigError, match="positive"):
        DualRateConfig(action_expert_hz=0)


def test_sensor_ring_windows() -> None:
    ring = SensorRing(channels=2, capacity=5)
    with pytest.raises(InvalidObservationError, match="no sensor samples"):
        ring.window(3)
    ring.push([1.0, 10.0])
    np.testing.assert_array_equal(ring.window(3)[:, 0], [1, 1, 1])  # padded with the oldest
    ring.push(np.array([[2, 20], [3, 30], [4, 40], [5, 50], [6, 60]], np.float32))
    np.testing.assert_array_equal(ring.window(3)[:, 0], [4, 5, 6])
    np.testing.assert_array_equal(ring.window(5)[:, 1], [20, 30, 40, 50, 60])
    assert ring.total == 6
    with pytest.raises(InvalidObservationError, match="2 channels"):
        ring.push([1.0, 2.0, 3.0])
    with pytest.raises(InvalidObservationError, match="NaN"):
        ring.push([np.nan, 1.0])
    with pytest.raises(ValueError, match="window size"):
        ring.window(6)


def test_profiler_schema(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vlarena.cli import app

    result = CliRunner().invoke(
        app,
        [
            "profile",
            "--preset",
            "tiny",
            "--views",
            "1..2",
            "--samples",
            "3",
            "--out",
            str(tmp_path / "p.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "p.json").read_text())
    assert [v["views"] for v in report["views"]] == [1, 2]
    for entry in report["views"]:
        for stage in ("feature_extraction", "action_expert"):
            assert set(entry[stage]) == {"mean_ms", "p95_ms", "achievable_hz"}
            assert entry[stage]["mean_ms"] > 0
        rec = entry["recommended"]
        assert set(rec) == {"vlm_update_hz", "action_expert_hz", "vlm_reuse_count", "sensor_window"}
        assert rec["sensor_window"] == 65  # 650 Hz sensor, 10 Hz expert
        assert rec["vlm_reuse_count"] >= 1
    bad = CliRunner().invoke(app, ["profile", "--family", "gr00t"])
    assert bad.exit_code == 2
    assert "unknown native policy type 'gr00t'" in bad.output


class BrokenVision(FlowVLAPolicy):
    def extract_features(self, observations: Any) -> Any:
        raise RuntimeError("camera pipeline broke")


@pytest.mark.parametrize("warm", [False, True])
def test_a_failed_refresh_is_raised_not_lost(policy: FlowVLAPolicy, warm: bool) -> None:
    import concurrent.futures

    broken = BrokenVision.create(PRESETS["tiny"], "broken")
    executor = concurrent.futures.ThreadPoolExecutor(1)
    rt = DualRateRuntime(broken, DualRateConfig(wait_timeout_s=10.0), executor=executor)
    obs = synthetic_observation(broken.info)
    if warm:  # features exist from a working refresh; the next refresh fails
        good = DualRateRuntime(policy, executor=ImmediateExecutor())
        good.start_vlm_update(obs)
        rt._latest = good.features

    def act_until_it_surfaces() -> None:
        for _ in range(200):  # the failure surfaces on the next call after it happens
            rt.predict_action(obs.state)
            time.sleep(0.01)

    rt.start_vlm_update(obs)
    with pytest.raises(RuntimeError, match="camera pipeline broke"):
        act_until_it_surfaces()
    executor.shutdown()


def test_reset_forgets_the_previous_episode(policy: FlowVLAPolicy) -> None:
    rt = runtime(policy, FakeClock(), ImmediateExecutor(), cold_start="idle")
    obs = synthetic_observation(policy.info)
    rt.start_vlm_update(obs)
    assert _version(rt.predict_action(obs.state)) == 1
    rt.reset()
    assert rt.features is None
    assert rt.should_start_vlm_update()
    assert rt.predict_action(obs.state).chunk is None  # idle again until new features


def test_sensor_ring_counts_every_pushed_sample() -> None:
    ring = SensorRing(channels=1, capacity=3)
    ring.push(np.arange(10, dtype=np.float32)[:, None])
    assert ring.total == 10
    np.testing.assert_array_equal(ring.window(3)[:, 0], [7, 8, 9])


def _version(out: ExpertOutput) -> int:
    assert out.chunk is not None
    return out.chunk.feature_version

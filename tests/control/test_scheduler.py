"""Chunk scheduling on a fake clock with injected latency, and the blending functions."""

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np
import pytest

from vlarena.control import ChunkScheduler, latest_only, rtc_prefix, weighted
from vlarena.errors import UnknownNameError


class LaggyExecutor(Executor):
    """Completes each request `latency_s` of fake time after it was submitted."""

    def __init__(self, clock: Callable[[], float], latency_s: float) -> None:
        self.clock, self.latency_s = clock, latency_s
        self.pending: list[tuple[float, Future[Any], Callable[[], Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.pending.append((self.clock() + self.latency_s, future, fn))
        return future

    def advance(self) -> None:
        for due, future, fn in list(self.pending):
            if self.clock() >= due - 1e-9:
                future.set_result(fn())
                self.pending.remove((due, future, fn))


def run(
    blend: str, latency_s: float, chunk: int = 8, steps: int = 60, horizon: int | None = None
) -> tuple[ChunkScheduler, list[float]]:
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    executor = LaggyExecutor(clock, latency_s)
    counter = [0]

    def request() -> Callable[[], np.ndarray]:  # chunk i: values 100*i + step offset
        counter[0] += 1  # read at the tick it is asked for; the "inference" runs later
        values = np.full((chunk, 2), 100.0 * counter[0], np.float32) + np.arange(chunk)[:, None]
        return lambda: values

    scheduler = ChunkScheduler(
        request,
        control_hz=10.0,
        blend=blend,
        initial_latency_s=latency_s,
        clock=clock,
        executor=executor,
        horizon=horizon,
    )
    applied = []
    for _ in range(steps):
        executor.advance()
        action = scheduler.step()
        applied.append(float("nan") if action is None else float(action[0]))
        now[0] += 0.1
    return scheduler, applied


@pytest.mark.parametrize("blend", ["latest", "weighted", "rtc"])
def test_no_idle_steps_with_100_ms_latency(blend: str) -> None:
    scheduler, applied = run(blend, latency_s=0.1)
    assert scheduler.idle_steps == 1  # only the very first tick, before any chunk exists
    assert not np.isnan(applied[2:]).any()
    assert scheduler.requests < 60 / 4  # chunks are used, not re-requested every tick


def test_request_timing_follows_the_measured_latency() -> None:
    fast, _ = run("latest", latency_s=0.1)
    slow, _ = run("latest", latency_s=0.35)
    assert fast.latency_steps == 1
    assert slow.latency_steps == 4
    assert slow.idle_steps <= 4  # only the cold start
    assert slow.requests > fast.requests  # asks earlier, so more often


def test_arrived_chunks_are_time_aligned() -> None:
    _, applied = run("latest", latency_s=0.2, chunk=8, steps=12)
    # Chunk 1 was asked at step 0 and arrived at step 2: its actions 2, 3, ... run from step 2.
    assert applied[2:4] == [102.0, 103.0]


def test_a_horizon_keeps_that_many_actions_of_each_chunk() -> None:
    free, unlimited = run("latest", latency_s=0.1, chunk=8, steps=12)
    capped, one_each = run("latest", latency_s=0.1, chunk=8, steps=12, horizon=1)
    # Asked at step k, arriving at k + 1: without a horizon a chunk runs until the next one is
    # due; with horizon 1 only its action 1 runs, and a chunk is asked for every tick.
    assert max(v % 100 for v in unlimited[1:]) > 1
    assert {v % 100 for v in one_each[1:]} == {1.0}
    assert capped.merged == capped.requests - 1 > free.requests
    assert capped.latency_s == pytest.approx(0.1)


def test_blends() -> None:
    old = np.zeros((4, 1), np.float32)
    new = np.ones((6, 1), np.float32)
    np.testing.assert_array_equal(latest_only(old, new, 2), new)
    w = weighted(old, new, 0)[:, 0]
    assert w.shape == (6,)
    assert np.all(np.diff(w[:5]) > 0)  # a monotone cross-fade from old to new
    assert 0 < w[0] < 1
    np.testing.assert_array_equal(w[4:], [1, 1])
    np.testing.assert_array_equal(rtc_prefix(old, new, 2)[:, 0], [0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(rtc_prefix(old, new, 10)[:, 0], [0, 0, 0, 0, 1, 1])


def test_unknown_blend_lists_valid() -> None:
    with pytest.raises(UnknownNameError, match="valid: latest, rtc, weighted"):
        ChunkScheduler(lambda: lambda: np.zeros((1, 1), np.float32), 10.0, blend="median")

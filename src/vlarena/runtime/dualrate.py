"""Dual-rate inference: the slow vision-language stage refreshes features in the
background at `vlm_update_hz`; the fast action stage runs at `action_expert_hz` on the newest
features plus the latest proprioception and sensor window.

Every caller drives it through one entry point, `step` (or `astep` on an event loop): start a
refresh when one is due, then act on the newest features. Every chunk carries the version and
age of the features it used. Past `max_feature_age_s` the
`stale` setting decides: "use" them anyway (flagged), "hold" the previous output (no new
inference), or "wait" for fresher features (up to `wait_timeout_s`). Before the first features
exist, `cold_start` decides: "wait" for them, or "idle" (no action: the robot holds still).
"""

import asyncio
import collections
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from vlarena.errors import ConfigError, DeadlineExceededError
from vlarena.policies import Policy, SplitPolicy, VLFeatures
from vlarena.types import ActionChunk, Observation, RobotState

Clock = Callable[[], float]


@dataclass(frozen=True)
class DualRateConfig:
    """Rates, staleness rules and thread budget of a dual-rate runtime."""

    vlm_update_hz: float = 3.33  # how often a feature refresh starts (one camera view's rate)
    action_expert_hz: float = 10.0  # fixed rate of the action stage
    max_feature_age_s: float = 2.0  # features older than this are stale
    stale: str = "use"  # past the bound: "use" (flagged), "hold" or "wait"
    cold_start: str = "wait"  # before the first features: "wait" or "idle"
    wait_timeout_s: float = 5.0  # the longest "wait" blocks before DeadlineExceededError
    vlm_threads: int | None = 1  # torch intra-op threads of the feature worker (None: as is)
    expert_threads: int | None = 1  # ... of the thread calling predict_action (None: as is)

    def __post_init__(self) -> None:
        if not (self.vlm_update_hz > 0 and self.action_expert_hz > 0):
            raise ConfigError("vlm_update_hz and action_expert_hz must be positive")
        if self.stale not in ("use", "hold", "wait"):
            raise ConfigError(f"stale must be use, hold or wait, got {self.stale!r}")
        if self.cold_start not in ("wait", "idle"):
            raise ConfigError(f"cold_start must be wait or idle, got {self.cold_start!r}")
        if self.max_feature_age_s <= 0 or self.wait_timeout_s <= 0:
            raise ConfigError("max_feature_age_s and wait_timeout_s must be positive")
        if any(n is not None and n < 1 for n in (self.vlm_threads, self.expert_threads)):
            raise ConfigError("thread counts must be at least 1")


@dataclass(frozen=True)
class Features:
    """A feature snapshot with its provenance."""

    features: VLFeatures
    version: int  # 1 for the first refresh, then +1 each
    captured_s: float  # when the observation behind them was taken (runtime clock)


@dataclass(frozen=True)
class ExpertOutput:
    """What one step produced; the chunk names the features' version and age."""

    chunk: ActionChunk | None  # None: idle before the first features
    stale: bool = False  # the features were older than max_feature_age_s
    held: bool = False  # repeated the previous output instead of running the expert
    refreshed: bool = False  # this step started a feature refresh


def _recent() -> collections.deque[float]:
    return collections.deque(maxlen=1000)


@dataclass
class DualRateStats:
    """Counters and recent samples for metrics and benchmarks."""

    refreshes: int = 0
    expert_calls: int = 0
    missed_deadlines: int = 0  # expert calls slower than one action period
    feature_age_s: collections.deque[float] = field(default_factory=_recent)  # at each action


class DualRateRuntime:
    """The dual-rate schedule over any policy with the split API."""

    def __init__(
        self,
        policy: Policy,
        config: DualRateConfig | None = None,
        clock: Clock = time.monotonic,
        executor: Executor | None = None,
    ) -> None:
        if not isinstance(policy, SplitPolicy):
            raise ConfigError(f"model {policy.info.name!r} does not support split inference")
        self.policy = policy
        self._split: SplitPolicy = policy
        self.config = config or DualRateConfig()
        self._clock = clock
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="vlm")
        self._owns_executor = executor is None
        self._cond = threading.Condition()
        self._latest: Features | None = None
        self._pending: Future[None] | None = None
        self._last_start = -float("inf")
        self._last_output: ExpertOutput | None = None
        self.stats = DualRateStats()

    @property
    def features(self) -> Features | None:
        return self._latest

    def step(
        self, state: RobotState, observe: Callable[[], Observation], seed: int | None = None
    ) -> ExpertOutput:
        """One control tick: if a refresh is due, start one on `observe()` (called only then:
        rendering is slow too); then act on the newest features with this proprioception.
        A cold start with "wait" blocks until the first features exist."""
        refreshed = self._refresh_if_due(observe)
        return replace(self.predict_action(state, seed), refreshed=refreshed)

    async def astep(
        self,
        state: RobotState,
        observe: Callable[[], Observation],
        seed: int | None = None,
        executor: Executor | None = None,
        timeout_s: float | None = None,
    ) -> ExpertOutput:
        """`step` for an event loop: a cold-start "wait" is awaited, not blocked on (up to
        `timeout_s`, default `wait_timeout_s`, else DeadlineExceededError), and the action stage
        runs on `executor`."""
        refreshed = self._refresh_if_due(observe)
        pending = self._pending
        cold = self._latest is None and self.config.cold_start == "wait"
        if cold and pending is not None and not pending.done():
            timeout = self.config.wait_timeout_s if timeout_s is None else timeout_s
            done, _ = await asyncio.wait({asyncio.wrap_future(pending)}, timeout=timeout)
            if not done:
                raise DeadlineExceededError("first features not ready before the deadline")
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(executor, self.predict_action, state, seed)
        return replace(out, refreshed=refreshed)

    def _refresh_if_due(self, observe: Callable[[], Observation]) -> bool:
        return self.should_start_vlm_update() and self.start_vlm_update(observe())

    def should_start_vlm_update(self, now: float | None = None) -> bool:
        """True when no refresh runs and one period has passed since the last started."""
        now = self._clock() if now is None else now
        idle = self._pending is None or self._pending.done()
        return idle and now - self._last_start >= 1.0 / self.config.vlm_update_hz

    def start_vlm_update(self, observation: Observation) -> bool:
        """Start a feature refresh in the background; False if one is already running."""
        if self._pending is not None and not self._pending.done():
            return False
        self._last_start = self._clock()
        self._pending = self._executor.submit(self._refresh, observation, self._last_start)
        self._pending.add_done_callback(self._wake)  # waiters also learn of a failed refresh
        return True

    def _wake(self, _: "Future[None]") -> None:
        with self._cond:
            self._cond.notify_all()

    def _refresh(self, observation: Observation, captured_s: float) -> None:
        if self.config.vlm_threads is not None:
            torch.set_num_threads(self.config.vlm_threads)  # per worker thread (OpenMP)
        features = self._split.extract_features([observation])
        with self._cond:
            version = 1 if self._latest is None else self._latest.version + 1
            self._latest = Features(features, version, captured_s)
            self.stats.refreshes += 1
            self._cond.notify_all()

    def _wait_for(self, fresh: Callable[[Features | None], bool]) -> Features:
        failed = self._pending  # a refresh that fails also ends the wait
        with self._cond:
            done = self._cond.wait_for(
                lambda: fresh(self._latest) or (failed is not None and failed.done()),
                self.config.wait_timeout_s,
            )
        self.raise_if_refresh_failed()
        with self._cond:
            if not done or not fresh(self._latest):
                raise DeadlineExceededError("no suitable features within wait_timeout_s")
            assert self._latest is not None
            return self._latest

    def raise_if_refresh_failed(self) -> None:
        """A refresh that raised in the background raises here, once, in the caller's thread."""
        pending = self._pending
        if pending is None or not pending.done():
            return
        error = CancelledError() if pending.cancelled() else pending.exception()
        if error is not None:
            self._pending = None
            raise error

    def reset(self) -> None:
        """Forget features and outputs (a new episode or scene); a refresh in flight still lands."""
        with self._cond:
            self._latest = None
            self._last_output = None
            self._last_start = -float("inf")

    def predict_action(self, state: RobotState, seed: int | None = None) -> ExpertOutput:
        """Run the action stage now on the newest features and this proprioception."""
        self.raise_if_refresh_failed()
        config = self.config
        latest = self._latest
        if latest is None:
            if config.cold_start == "idle":
                return ExpertOutput(None)
            latest = self._wait_for(lambda f: f is not None)
        now = self._clock()
        stale = now - latest.captured_s > config.max_feature_age_s
        if stale and config.stale == "hold" and self._last_output is not None:
            return ExpertOutput(self._last_output.chunk, stale=True, held=True)
        if stale and config.stale == "wait":
            latest = self._wait_for(
                lambda f: f is not None and self._clock() - f.captured_s <= config.max_feature_age_s
            )
            now = self._clock()
            stale = False
        if config.expert_threads is not None:
            torch.set_num_threads(config.expert_threads)
        started = self._clock()
        chunk = self._split.predict_from_features(latest.features, [state], [seed])[0]
        spent = self._clock() - started
        age = now - latest.captured_s
        self.stats.expert_calls += 1
        self.stats.feature_age_s.append(age)
        if spent > 1.0 / config.action_expert_hz:
            self.stats.missed_deadlines += 1
        chunk = replace(chunk, feature_version=latest.version, feature_age_ms=age * 1000.0)
        output = ExpertOutput(chunk, stale=stale)
        self._last_output = output
        return output

    def close(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class LoopReport:
    """Timing of a fixed-rate control loop."""

    outputs: list[ExpertOutput]
    periods_s: list[float]  # time between successive loop iterations
    actions_per_s: float
    nominal_period_s: float  # 1 / action_expert_hz

    def jitter_ms(self, percentile: float) -> float:
        """Percentile of |period - nominal period| in milliseconds."""
        if not self.periods_s:
            return 0.0
        deviation = np.abs(np.asarray(self.periods_s) - self.nominal_period_s) * 1000.0
        return float(np.percentile(deviation, percentile))


def run_loop(
    runtime: DualRateRuntime,
    observe: Callable[[], Observation],
    duration_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Clock = time.monotonic,
) -> LoopReport:
    """A fixed-rate control loop: one `step` per action period."""
    period = 1.0 / runtime.config.action_expert_hz
    began = start = clock()
    outputs: list[ExpertOutput] = []
    ticks: list[float] = []
    k = 0
    while clock() - began < duration_s:
        ticks.append(clock())
        observation = observe()
        outputs.append(runtime.step(observation.state, functools.partial(_same, observation)))
        k += 1
        delay = start + k * period - clock()
        if delay > 0:
            sleep(delay)
        else:  # overran: start the next period now rather than bursting to catch up
            start, k = clock(), 0
    actions = sum(len(o.chunk.actions) for o in outputs if o.chunk is not None and not o.held)
    elapsed = max(clock() - began, 1e-9)
    return LoopReport(outputs, list(np.diff(ticks)), actions / elapsed, period)


def _same(observation: Observation) -> Observation:
    return observation

"""Keep a robot fed with actions: ask for the next chunk early enough (from the measured
latency, not a fixed threshold) and merge it with what is still queued.

Time alignment: a chunk requested at control step k describes steps k, k+1, ...; when it
arrives at step k + d its first d actions are already in the past and are dropped. What is left
overlaps the still-queued actions of the previous chunk, and a blend decides what runs:

- `latest_only`: the new chunk replaces the queue;
- `weighted`: over the overlap, the weight moves linearly from the old actions to the new;
- `rtc_prefix` (real-time-chunking style): the next `freeze` queued actions are committed and
  kept, the new chunk continues after them (for flow models, whose chunks are smooth).
"""

import collections
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from vlarena.errors import ConfigError, UnknownNameError

Actions = NDArray[np.float32]
Blend = Callable[[Actions, Actions, int], Actions]  # (queued, new aligned, freeze) -> queue
# Called on the control thread when a chunk is due, to read what the model needs at this tick;
# returns the call that produces the chunk, which runs in the background.
Request = Callable[[], Callable[[], Actions]]


def latest_only(queued: Actions, new: Actions, freeze: int) -> Actions:
    """The new chunk replaces whatever is queued."""
    return new


def weighted(queued: Actions, new: Actions, freeze: int) -> Actions:
    """Cross-fade from the queued actions to the new ones over their overlap."""
    overlap = min(len(queued), len(new))
    if overlap == 0:
        return new
    w_old = np.linspace(1.0, 0.0, overlap + 2, dtype=np.float32)[1:-1, None]
    blended = w_old * queued[:overlap] + (1.0 - w_old) * new[:overlap]
    return np.concatenate([blended, new[overlap:]]).astype(np.float32)


def rtc_prefix(queued: Actions, new: Actions, freeze: int) -> Actions:
    """Keep the next `freeze` queued actions (already committed), then continue with the new."""
    kept = queued[: min(freeze, len(queued))]
    return np.concatenate([kept, new[len(kept) :]]).astype(np.float32)


BLENDS: dict[str, Blend] = {"latest": latest_only, "weighted": weighted, "rtc": rtc_prefix}


class ChunkScheduler:
    """Call `step()` once per control tick; it returns the action to apply (None: idle).

    `request` is called at the tick a chunk is asked for (the chunk describes that tick and the
    ones after it); `horizon` caps how many actions of each chunk are kept once aligned.
    """

    def __init__(
        self,
        request: Request,
        control_hz: float,
        blend: str = "weighted",
        initial_latency_s: float = 0.2,
        margin_steps: int = 1,
        clock: Callable[[], float] = time.monotonic,
        executor: Executor | None = None,
        horizon: int | None = None,
    ) -> None:
        if blend not in BLENDS:
            raise UnknownNameError("blend", blend, BLENDS)
        if control_hz <= 0 or initial_latency_s < 0 or margin_steps < 0:
            raise ConfigError("control_hz must be positive, latency and margin non-negative")
        if horizon is not None and horizon < 1:
            raise ConfigError(f"horizon must be at least 1, got {horizon}")
        self._request = request
        self._horizon = horizon
        self._period = 1.0 / control_hz
        self._blend = BLENDS[blend]
        self._margin = margin_steps
        self._clock = clock
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="chunk-request")
        self._owns_executor = executor is None
        self._queue: Actions = np.zeros((0, 0), np.float32)
        self._in_flight: tuple[Future[Actions], int, float] | None = None  # future, step, time
        self._latencies_s: collections.deque[float] = collections.deque([initial_latency_s], 10)
        self.step_index = 0
        self.idle_steps = 0
        self.requests = 0
        self.merged = 0  # chunks that arrived in time to add actions

    @property
    def latency_s(self) -> float:
        """The latest measured request latency (the initial guess before any)."""
        return self._latencies_s[-1]

    @property
    def latency_steps(self) -> int:
        """Control steps a request is expected to take (worst of the recent latencies)."""
        return math.ceil(max(self._latencies_s) / self._period - 1e-9)

    def step(self) -> Actions | None:
        """Merge an arrived chunk, request the next one if due, and pop this tick's action."""
        self._merge_arrived()
        if self._in_flight is None and len(self._queue) <= self.latency_steps + self._margin:
            asked = self._clock()
            self._in_flight = (self._executor.submit(self._request()), self.step_index, asked)
            self.requests += 1
        self.step_index += 1
        if len(self._queue) == 0:
            self.idle_steps += 1
            return None
        action, self._queue = self._queue[0], self._queue[1:]
        return action

    def _merge_arrived(self) -> None:
        if self._in_flight is None or not self._in_flight[0].done():
            return
        future, asked_at, asked_time = self._in_flight
        self._in_flight = None
        chunk = np.asarray(future.result(), dtype=np.float32)  # a failed request raises here
        self._latencies_s.append(self._clock() - asked_time)
        late = self.step_index - asked_at  # actions of the new chunk already in the past
        aligned = chunk[late : None if self._horizon is None else late + self._horizon]
        if len(aligned) == 0:
            return  # arrived too late to add anything: keep what is queued
        self.merged += 1
        if self._queue.size == 0:
            self._queue = aligned
        else:
            self._queue = self._blend(self._queue, aligned, self.latency_steps + self._margin)

    def close(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

"""A circuit breaker: fail fast while a dependency is down, probe it once to recover."""

import time
from collections.abc import Callable
from typing import Literal

from vlarena.errors import ExecutionUnavailableError

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Opens after `failures` consecutive failures; after `reset_s` lets one probe through.

    A successful probe closes it; a failed one opens it for another `reset_s`.
    """

    def __init__(
        self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened_count = 0  # times it opened (for health and tests)

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.reset_s else "open"

    @property
    def accepting(self) -> bool:
        """Whether a call would go through now (closed, or half open with no probe out)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probing)

    def retry_after_s(self) -> float:
        """Seconds until a probe may go through (0 when closed)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.reset_s - (self._clock() - self._opened_at))

    def before_call(self) -> bool:
        """Raise ExecutionUnavailableError unless a call may go through; True for the probe."""
        state = self.state
        if state == "closed":
            return False
        if state == "half_open" and not self._probing:
            self._probing = True  # this call is the probe; the rest wait for its outcome
            return True
        raise ExecutionUnavailableError(
            "the execution service is unavailable (circuit breaker open)",
            retry_after_s=max(self.retry_after_s(), 1.0),
        )

    def record(self, ok: bool, probe: bool) -> None:
        """Count the outcome of a call that went through (`probe`: what before_call said)."""
        if probe:
            self._probing = False
        elif self._opened_at is not None:
            return  # a call from before the breaker opened: only the probe decides now
        if ok:
            self._failures = 0
            self._opened_at = None
            return
        self._failures += 1
        if probe or self._failures >= self.threshold:
            self.opened_count += 1
            self._opened_at = self._clock()

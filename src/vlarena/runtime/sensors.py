"""A ring buffer for high-rate sensor streams (e.g. force/torque at 650 Hz)."""

import threading

import numpy as np
from numpy.typing import ArrayLike, NDArray

from vlarena.errors import InvalidObservationError


class SensorRing:
    """Keeps the newest `capacity` samples of a D-channel stream; thread-safe."""

    def __init__(self, channels: int, capacity: int) -> None:
        if channels <= 0 or capacity <= 0:
            raise ValueError("channels and capacity must be positive")
        self._data = np.zeros((capacity, channels), dtype=np.float32)
        self._count = 0  # samples ever pushed
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Samples pushed since creation."""
        return self._count

    def push(self, samples: ArrayLike) -> None:
        """Append one sample (D,) or several (n, D), oldest first."""
        block = np.atleast_2d(np.asarray(samples, dtype=np.float32))
        capacity, channels = self._data.shape
        if block.ndim != 2 or block.shape[1] != channels:
            raise InvalidObservationError(f"sensor samples must have {channels} channels")
        if not np.isfinite(block).all():
            raise InvalidObservationError("sensor samples contain NaN or inf")
        pushed, block = len(block), block[-capacity:]
        with self._lock:
            self._count += pushed - len(block)  # the oldest samples never fit
            index = (self._count + np.arange(len(block))) % capacity
            self._data[index] = block
            self._count += len(block)

    def window(self, size: int) -> NDArray[np.float32]:
        """The newest `size` samples, oldest first; repeats the oldest while fewer exist."""
        capacity = self._data.shape[0]
        if not 0 < size <= capacity:
            raise ValueError(f"window size must be in 1..{capacity}")
        with self._lock:
            if self._count == 0:
                raise InvalidObservationError("no sensor samples yet")
            available = min(self._count, size)
            index = (self._count - available + np.arange(available)) % capacity
            newest = self._data[index]
        if available < size:
            newest = np.concatenate([np.repeat(newest[:1], size - available, axis=0), newest])
        return newest.copy()

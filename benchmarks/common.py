"""Timing helpers shared by every benchmark section."""

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import torch


@dataclass(frozen=True)
class Timing:
    """Latency samples of one measured call, in milliseconds."""

    samples_ms: list[float]

    @property
    def p50(self) -> float:
        return float(np.percentile(self.samples_ms, 50))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.samples_ms, 99))


def time_calls(fn: Callable[[], object], samples: int, warmup: int = 3) -> Timing:
    """Call `fn` `warmup` times unmeasured, then `samples` times measured."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000.0)
    return Timing(times)


def machine_description() -> str:
    """CPU model, cores, OS, Python and torch versions, and the date, for the report header."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op threads); "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    )

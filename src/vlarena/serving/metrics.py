"""Prometheus metrics of the inference server (`vla_*`: latency, queue and compute time, requests,
batch sizes, dual-rate refreshes and feature age, GPU utilisation)."""

import logging
import time
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

log = logging.getLogger(__name__)

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """All metrics in one registry of their own (several servers can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        seconds = partial(Histogram, buckets=_LATENCY_BUCKETS_S, registry=r)
        self.latency = seconds(
            "vla_inference_latency_seconds", "Queue + compute time", ["model", "embodiment"]
        )
        self.queue_time = seconds("vla_queue_time_seconds", "Time waiting to be batched", ["model"])
        self.compute_time = seconds(
            "vla_compute_time_seconds", "Policy call time per batch", ["model"]
        )
        self.requests = Counter(
            "vla_inference_requests",
            "Requests by model and final status",
            ["model", "status"],
            registry=r,
        )
        self.nonfinite_actions = Counter(
            "vla_nonfinite_actions",
            "Requests failed because the policy produced NaN or inf actions",
            ["model"],
            registry=r,
        )
        self.batch_size = Histogram(
            "vla_batch_size",
            "Requests per executed batch",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.stream_dropped = Counter(
            "vla_stream_observations_dropped",
            "Stream observations superseded by a newer one before inference",
            registry=r,
        )
        self.feature_age = Histogram(
            "vla_dual_rate_feature_age_seconds",
            "Age of the features behind each dual-rate action",
            ["model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.refreshes = Counter(
            "vla_dual_rate_refreshes", "Dual-rate feature refreshes started", ["model"], registry=r
        )
        self.queue_depth = Gauge("vla_queue_depth", "Requests waiting to be batched", registry=r)
        self.uptime = Gauge("vla_uptime_seconds", "Seconds since the server started", registry=r)
        self.model = Info("vla_model", "Served models, device and precision", registry=r)
        started = time.monotonic()
        self.uptime.set_function(lambda: time.monotonic() - started)
        self.gpu = _gpu_gauges(r)

    def gpu_utilization_percent(self) -> float:
        """GPU utilization of device 0 (0 without NVML)."""
        return 0.0 if self.gpu is None else float(self.gpu.utilization())


class _Nvml:
    """GPU gauges read from NVML at scrape time."""

    def __init__(self, nvml: Any, registry: CollectorRegistry) -> None:
        self._nvml = nvml
        self._handle = nvml.nvmlDeviceGetHandleByIndex(0)
        Gauge("vla_gpu_utilization_percent", "GPU utilization %", registry=registry).set_function(
            self.utilization
        )
        Gauge("vla_gpu_memory_used_bytes", "GPU memory used", registry=registry).set_function(
            lambda: nvml.nvmlDeviceGetMemoryInfo(self._handle).used
        )
        Gauge("vla_gpu_memory_total_bytes", "GPU memory total", registry=registry).set_function(
            lambda: nvml.nvmlDeviceGetMemoryInfo(self._handle).total
        )

    def utilization(self) -> float:
        return float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)


def _gpu_gauges(registry: CollectorRegistry) -> _Nvml | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        return _Nvml(pynvml, registry)
    except Exception:  # no package, no driver or no GPU: the gauges are simply absent
        log.debug("NVML unavailable; GPU gauges disabled")
        return None

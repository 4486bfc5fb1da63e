"""Robot-side control helpers: chunk scheduling, blending and temporal ensembling around any
predict function."""

from vlarena.control.ensemble import TemporalEnsemble
from vlarena.control.scheduler import BLENDS, ChunkScheduler, latest_only, rtc_prefix, weighted

__all__ = ["BLENDS", "ChunkScheduler", "TemporalEnsemble", "latest_only", "rtc_prefix", "weighted"]

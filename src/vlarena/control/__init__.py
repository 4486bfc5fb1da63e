"""Robot-side control helpers: chunk scheduling and blending around any predict function."""

from vlarena.control.scheduler import BLENDS, ChunkScheduler, latest_only, rtc_prefix, weighted

__all__ = ["BLENDS", "ChunkScheduler", "latest_only", "rtc_prefix", "weighted"]

"""Rate limits per session and per client IP (moving windows; in memory or in Redis)."""

import time

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from vlarena.errors import RateLimitedError


class RateLimiter:
    """Named limits (e.g. "vote": "30/minute"), each applied to every key it is given."""

    def __init__(self, storage_url: str, rates: dict[str, str]) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_url))
        self._items: dict[str, RateLimitItem] = {name: parse(rate) for name, rate in rates.items()}

    async def hit(self, name: str, *keys: str) -> None:
        """Count one request against `name` for each key; RateLimitedError if any is spent."""
        item = self._items[name]
        for key in keys:
            if not await self._limiter.hit(item, name, key):
                stats = await self._limiter.get_window_stats(item, name, key)
                raise RateLimitedError(
                    f"too many {name} requests: the limit is {item}",
                    retry_after_s=max(1.0, stats.reset_time - time.time()),
                )

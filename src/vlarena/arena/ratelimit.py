"""Rate limits per session and per client IP (moving windows; in memory or in Redis).

Limits kept in Redis are shared by every arena process. While that Redis cannot be reached
(or does not answer within STORAGE_TIMEOUT_S), each process limits on its own (in memory)
rather than failing or stalling every request.
"""

import asyncio
import logging
import time

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from vlarena.errors import RateLimitedError

log = logging.getLogger(__name__)
MEMORY = "async+memory://"
STORAGE_TIMEOUT_S = 1.0  # a shared storage slower than this is treated as down
DOWN_FOR_S = 5.0  # then left alone this long before it is tried again
WARN_EVERY_S = 60.0  # while it is down, say so at most this often


class RateLimiter:
    """Named limits (e.g. "vote": "30/minute"), each applied to every key it is given."""

    def __init__(self, storage_url: str, rates: dict[str, str]) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_url))
        self._fallback = (
            None
            if storage_url.startswith(MEMORY)
            else MovingWindowRateLimiter(storage_from_string(MEMORY))
        )
        self._items: dict[str, RateLimitItem] = {name: parse(rate) for name, rate in rates.items()}
        self._warned_at = -WARN_EVERY_S
        self._down_until = 0.0

    async def hit(self, name: str, *keys: str) -> None:
        """Count one request against `name` for each key; RateLimitedError if any is spent."""
        if self._fallback is None:
            await self._hit(self._limiter, name, keys)
            return
        if time.monotonic() < self._down_until:
            await self._hit(self._fallback, name, keys)
            return
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT_S):
                await self._hit(self._limiter, name, keys)
        except RateLimitedError:
            raise
        except Exception as exc:  # the storage's own errors (its client's), or the timeout
            self._down_until = time.monotonic() + DOWN_FOR_S
            if time.monotonic() - self._warned_at >= WARN_EVERY_S:
                self._warned_at = time.monotonic()
                log.warning("shared rate-limit storage unavailable (%r); limiting in-process", exc)
            await self._hit(self._fallback, name, keys)

    async def _hit(
        self, limiter: MovingWindowRateLimiter, name: str, keys: tuple[str, ...]
    ) -> None:
        item = self._items[name]
        for key in keys:
            if not await limiter.hit(item, name, key):
                stats = await limiter.get_window_stats(item, name, key)
                raise RateLimitedError(
                    f"too many {name} requests: the limit is {item}",
                    retry_after_s=max(1.0, stats.reset_time - time.time()),
                )

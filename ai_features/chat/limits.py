"""Per-user limits on new streams: a rate per minute (the `limits` library's moving window)
and a cap on generations running at once (counted by the service that runs them)."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from .errors import RateLimited


class RateLimit:
    def __init__(self, per_minute: int, storage_uri: str = "async+memory://") -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self.enabled = per_minute > 0

    async def hit(self, user_id: int) -> None:
        """Count one new stream for the user, or raise RateLimited with Retry-After."""
        if not self.enabled:
            return
        key = str(user_id)
        if await self.limiter.hit(self.item, "chat-stream", key):
            return
        stats = await self.limiter.get_window_stats(self.item, "chat-stream", key)
        raise RateLimited(retry_after=max(1, math.ceil(stats.reset_time - time.time())))

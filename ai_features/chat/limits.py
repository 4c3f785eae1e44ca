"""Per-user limits on new streams: a rate per minute (the `limits` library's moving window)
and a cap on generations running at once (counted by the service that runs them).

With REDIS_URL the rate limit lives in Redis (the `limits` library's Redis storage, whose
moving window is one atomic Lua script), so it counts requests to every process and
instance. While Redis is unreachable each process counts in its own memory instead.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from ..redis_client import process_redis
from .errors import RateLimited


def redis_storage_uri(redis_url: str) -> str:
    """The `limits` library's name for the same server with its asyncio storage."""
    scheme, sep, rest = redis_url.partition("://")
    return f"async+{scheme}{sep}{rest}"


class RateLimit:
    def __init__(self, per_minute: int, storage_uri: str = "async+memory://") -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self.enabled = per_minute > 0
        self.redis = process_redis()
        self.shared: MovingWindowRateLimiter | None = None
        if self.redis is not None:
            storage = storage_from_string(
                redis_storage_uri(settings.REDIS_URL),
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix="c3-limits",
                socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS,
            )
            self.shared = MovingWindowRateLimiter(storage)

    async def hit(self, user_id: int) -> None:
        """Count one new stream for the user, or raise RateLimited with Retry-After."""
        if not self.enabled:
            return
        key = str(user_id)
        limiter = self.limiter
        if self.shared is not None and self.redis is not None and self.redis.outage.should_try():
            try:
                if await self.shared.hit(self.item, "chat-stream", key):
                    self.redis.outage.succeeded()
                    return
                limiter = self.shared
            except Exception as exc:  # limits' StorageError wraps the client's errors
                self.redis.outage.failed(exc)  # logged once per outage; count locally
        if limiter is self.limiter and await limiter.hit(self.item, "chat-stream", key):
            return
        try:
            stats = await limiter.get_window_stats(self.item, "chat-stream", key)
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        except Exception:  # Redis went away between the two calls: the window's length
            retry_after = 60
        raise RateLimited(retry_after=retry_after)

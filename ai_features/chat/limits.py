"""Per-user limits on new streams: a rate per minute (the `limits` library's moving window)
and a cap on generations running at once (counted by the service that runs them).

With REDIS_URL the rate limit lives in Redis (the `limits` library's Redis storage, whose
moving window is one atomic Lua script), so it counts requests to every process and
instance. While Redis is unreachable each process counts in its own memory instead.
"""

from __future__ import annotations

import contextlib
import math
import time

from django.conf import settings
from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from ..redis_client import RedisUnavailable, process_redis
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

    async def ahit(self, user_id: int) -> None:
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


# Counts a user's generations across every process, atomically, and takes a slot if one is
# free. Members are `p:<id>` (a slot taken for a start still storing its rows; it lapses
# after ARGV[3] seconds) or `m:<message id>` (a running generation, counted while its
# liveness key, refreshed by the producing process, exists: a killed process frees its
# slots within STREAM_STALE_AFTER_SECONDS).
_TAKE_SLOT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count = 0
for i = 1, #members, 2 do
  local member, score = members[i], tonumber(members[i + 1])
  local alive
  if score > 0 then
    alive = score > t
  else
    alive = redis.call('EXISTS', ARGV[4] .. string.sub(member, 3)) == 1
  end
  if alive then count = count + 1 else redis.call('ZREM', KEYS[1], member) end
end
if count >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""
PENDING_SLOT_SECONDS = 30


def _slots_key(user_id: int) -> str:
    return f"c3:slots:{user_id}"


class StreamSlots:
    """The per-user cap on generations at once, shared by every process through Redis.

    `atake` answers True (taken), False (the cap is reached) or None (Redis unavailable:
    the caller counts in its own process, as without Redis).
    """

    def __init__(self, cap: int, live_key_prefix: str = "c3:live:") -> None:
        self.cap = cap
        self.redis = process_redis()
        self.live_key_prefix = live_key_prefix

    @property
    def enabled(self) -> bool:
        return self.redis is not None and self.cap > 0

    async def atake(self, user_id: int, pending_id: str) -> bool | None:
        if not self.enabled:
            return None
        assert self.redis is not None
        try:
            taken = await self.redis.acall(
                lambda r: r.eval(
                    _TAKE_SLOT,
                    1,
                    _slots_key(user_id),
                    self.cap,
                    f"p:{pending_id}",
                    PENDING_SLOT_SECONDS,
                    self.live_key_prefix,
                )
            )
        except RedisUnavailable:
            return None
        return bool(taken)

    async def abind(self, user_id: int, pending_id: str, message_id: str) -> None:
        """The start stored its rows and its generation is live: count it by its message."""
        await self._update(user_id, [f"p:{pending_id}"], {f"m:{message_id}": 0})

    async def arelease(self, user_id: int, *, pending_id: str = "", message_id: str = "") -> None:
        members = [m for m in (pending_id and f"p:{pending_id}", message_id and f"m:{message_id}")]
        await self._update(user_id, [m for m in members if m], {})

    async def _update(self, user_id: int, remove: list[str], add: dict[str, float]) -> None:
        if not self.enabled:
            return
        assert self.redis is not None

        def update(r):
            pipe = r.pipeline(transaction=True)
            if remove:
                pipe.zrem(_slots_key(user_id), *remove)
            if add:
                pipe.zadd(_slots_key(user_id), add)
            return pipe.execute()

        with contextlib.suppress(RedisUnavailable):
            await self.redis.acall(update)

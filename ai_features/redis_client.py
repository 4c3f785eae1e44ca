"""The one Redis connection pool of a process, and how this project lives with outages.

Redis is optional (`REDIS_URL`). When it is set, every process (a uvicorn worker, a
gunicorn worker's core loop) gets one `redis.asyncio` client with short timeouts. When Redis
stops answering, callers fall back to their in-process state: `RedisOutage` logs that once
per outage (not per token), and tells callers not to try again for `REDIS_RETRY_SECONDS`,
so a dead Redis never adds its timeout to every request.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Every failure the client raises for an unreachable or misbehaving server.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


def redis_configured() -> bool:
    return bool(settings.REDIS_URL)


def make_client(url: str, timeout: float, extra_timeout: float = 0.0) -> aredis.Redis:
    """A client that fails fast: one immediate reconnect (a pooled connection may predate
    a Redis restart), then the error goes to the caller, who falls back."""
    return aredis.Redis.from_url(
        url,
        socket_timeout=timeout + extra_timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


class RedisOutage:
    """Outage bookkeeping for one process: log the first failure and the recovery once."""

    def __init__(self, retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds
        self.down_since: float | None = None
        self._retry_at = 0.0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def should_try(self) -> bool:
        return self.down_since is None or time.monotonic() >= self._retry_at

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._retry_at = now + self.retry_seconds
        if self.down_since is None:
            self.down_since = now
            # The class name only: a message could carry the URL (and its password).
            logger.warning(
                "Redis unavailable (%s): using this process's memory, retrying every %.0fs",
                type(exc).__name__,
                self.retry_seconds,
            )

    def succeeded(self) -> None:
        if self.down_since is not None:
            logger.warning("Redis reachable again after %.0fs", time.monotonic() - self.down_since)
            self.down_since = None


class ProcessRedis:
    """The process's client (made on first use, remade after a fork) and its outage state."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._client: aredis.Redis | None = None
        self.outage = RedisOutage(settings.REDIS_RETRY_SECONDS)

    @property
    def client(self) -> aredis.Redis:
        if self._client is None or self._pid != os.getpid():
            self._client = make_client(settings.REDIS_URL, settings.REDIS_TIMEOUT_SECONDS)
            self._pid = os.getpid()
        return self._client

    async def acall(self, operation: Callable[[aredis.Redis], Awaitable[T]]) -> T:
        """Run one operation; on failure record the outage and re-raise (the caller
        falls back). Raises RedisUnavailable without trying while an outage is fresh."""
        if not self.outage.should_try():
            raise RedisUnavailable()
        try:
            result = await operation(self.client)
        except REDIS_ERRORS as exc:
            self.outage.failed(exc)
            raise RedisUnavailable() from None
        self.outage.succeeded()
        return result

    async def aping(self) -> bool:
        """For /health/: always really asks (so it reports a recovery at once)."""
        try:
            await self.client.ping()
        except REDIS_ERRORS as exc:
            self.outage.failed(exc)
            return False
        self.outage.succeeded()
        return True


class RedisUnavailable(Exception):
    """Redis is configured but cannot be used right now: fall back to process memory."""


_process_redis: ProcessRedis | None = None


def process_redis() -> ProcessRedis | None:
    """The process's Redis, or None when REDIS_URL is not set."""
    global _process_redis
    if not redis_configured():
        return None
    if _process_redis is None:
        _process_redis = ProcessRedis()
    return _process_redis


async def aredis_health() -> str:
    """`ok`, `unavailable`, or `not_configured` (for /health/)."""
    redis = process_redis()
    if redis is None:
        return "not_configured"
    return "ok" if await redis.aping() else "unavailable"

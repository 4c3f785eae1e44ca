"""The rate limit in Redis: shared by every process, and local again while Redis is down."""

from __future__ import annotations

import pytest

import ai_features.redis_client as redis_client
from ai_features.chat.errors import RateLimited
from ai_features.chat.limits import RateLimit, StreamSlots, redis_storage_uri
from tests.support.redis_server import RedisServer


def test_storage_uri_keeps_scheme_credentials_and_db() -> None:
    assert redis_storage_uri("redis://:pw@host:6379/2") == "async+redis://:pw@host:6379/2"
    assert redis_storage_uri("rediss://u:pw@host:6380") == "async+rediss://u:pw@host:6380"


async def test_without_redis_each_limiter_counts_alone(settings) -> None:
    settings.REDIS_URL = ""
    first, second = RateLimit(2), RateLimit(2)
    for _ in range(2):
        await first.ahit(7)
        await second.ahit(7)
    with pytest.raises(RateLimited):
        await first.ahit(7)


@pytest.mark.redis
async def test_two_processes_share_one_window(settings, redis_url, monkeypatch) -> None:
    settings.REDIS_TIMEOUT_SECONDS = 0.5
    monkeypatch.setattr(redis_client, "_process_redis", None)
    # Two limiters stand for two processes: they only share Redis.
    first = RateLimit(3)
    monkeypatch.setattr(redis_client, "_process_redis", None)
    second = RateLimit(3)
    await first.ahit(41)
    await second.ahit(41)
    await first.ahit(41)
    with pytest.raises(RateLimited) as refused:
        await second.ahit(41)
    assert 1 <= refused.value.retry_after <= 60
    await second.ahit(42)  # another user has a window of their own


@pytest.mark.redis
async def test_redis_down_counts_in_memory_without_failing(
    settings, redis_url: str, redis_server: RedisServer, monkeypatch
) -> None:
    settings.REDIS_TIMEOUT_SECONDS = 0.5
    settings.REDIS_RETRY_SECONDS = 60
    monkeypatch.setattr(redis_client, "_process_redis", None)
    limit = RateLimit(2)
    await limit.ahit(5)
    redis_server.stop()
    await limit.ahit(5)  # Redis gone: counted in this process's memory, no error
    assert limit.redis is not None and limit.redis.outage.down
    await limit.ahit(5)
    with pytest.raises(RateLimited):
        await limit.ahit(5)


@pytest.mark.redis
async def test_stream_slots_are_shared_and_freed_with_their_producer(
    settings, redis_url: str, monkeypatch
) -> None:
    monkeypatch.setattr(redis_client, "_process_redis", None)
    first = StreamSlots(2)
    monkeypatch.setattr(redis_client, "_process_redis", None)
    second = StreamSlots(2)  # another process
    assert await first.atake(9, "a") is True
    assert await second.atake(9, "b") is True
    assert await first.atake(9, "c") is False
    assert await second.atake(10, "d") is True  # another user

    # "a" becomes a running generation with a live producer; "b"'s producer died (its
    # liveness key is gone), which frees its slot for the next start.
    client = first.redis.client
    await client.set("c3:live:msg-a", "1")
    await first.abind(9, "a", "msg-a")
    await second.abind(9, "b", "msg-b")
    assert await second.atake(9, "e") is True
    assert await first.atake(9, "f") is False
    await first.arelease(9, message_id="msg-a")
    assert await first.atake(9, "g") is True


async def test_without_redis_slots_leave_the_count_to_the_process(settings) -> None:
    settings.REDIS_URL = ""
    assert await StreamSlots(2).atake(1, "x") is None

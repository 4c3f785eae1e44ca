"""The process's Redis client against a real redis-server that the test stops."""

from __future__ import annotations

import logging
import time

import pytest

from ai_features.redis_client import ProcessRedis, RedisUnavailable, aredis_health
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_settings(settings, redis_url: str):
    settings.REDIS_TIMEOUT_SECONDS = 0.5
    settings.REDIS_RETRY_SECONDS = 0.3
    return settings


async def test_calls_run_while_redis_answers(redis_settings) -> None:
    redis = ProcessRedis()
    await redis.acall(lambda r: r.set("k", "v"))
    assert await redis.acall(lambda r: r.get("k")) == b"v"
    assert not redis.outage.down


async def test_an_outage_is_logged_once_and_retried_later(
    redis_settings, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis = ProcessRedis()
    assert await redis.acall(lambda r: r.ping())
    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="ai_features.redis_client")

    tried = []

    def ping(client):
        tried.append(1)
        return client.ping()

    for _ in range(20):
        with pytest.raises(RedisUnavailable):
            await redis.acall(ping)
    # Only the first call waited for the dead server; the others did not even try.
    assert len(tried) == 1
    assert redis.outage.down
    unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(unavailable) == 1
    assert redis_settings.REDIS_URL not in caplog.text

    redis_server.start()
    time.sleep(redis_settings.REDIS_RETRY_SECONDS)
    assert await redis.acall(lambda r: r.ping())
    assert not redis.outage.down
    assert "reachable again" in caplog.text


async def test_health_says_which(redis_settings, redis_server: RedisServer, monkeypatch) -> None:
    import ai_features.redis_client as module

    monkeypatch.setattr(module, "_process_redis", None)
    assert await aredis_health() == "ok"
    redis_server.stop()
    monkeypatch.setattr(module, "_process_redis", None)
    assert await aredis_health() == "unavailable"
    redis_settings.REDIS_URL = ""
    assert await aredis_health() == "not_configured"

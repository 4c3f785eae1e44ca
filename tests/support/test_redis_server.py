"""The private redis-server the Redis tests use really starts, answers and stops."""

from __future__ import annotations

import pytest
import redis

from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


def test_private_server_starts_empty_and_can_be_stopped(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=1)
    assert client.ping()
    client.set("probe", "1")
    assert client.dbsize() == 1

    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        client.ping()

    redis_server.start()
    assert client.ping()
    assert client.dbsize() == 0  # nothing kept on disk: a restart is a fresh server

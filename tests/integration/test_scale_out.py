"""Issue 10 on real servers: two c3-app-stream processes on different ports sharing one
Redis (a private redis-server this module can stop) and one database."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.chat_client import ChatClient
from tests.support.coalesced import assert_ids_increase
from tests.support.fake_upstream import directive, expected_text
from tests.support.redis_server import RedisServer
from tests.support.servers import Server, Stack, free_port, running_stack
from tests.support.sse import answer_text

pytestmark = [pytest.mark.integration, pytest.mark.redis]

STALE_AFTER = 2.0
RATE_LIMIT = 12  # per user and minute; each test uses a fresh user
MAX_CONCURRENT = 2
SLOW = directive(tokens=60, pace=0.05)  # three seconds unless stopped


@pytest.fixture(scope="module")
def stack(db_kind: str, module_tmp: Path, redis_server: RedisServer) -> Iterator[Stack]:
    extra = {
        "REDIS_URL": redis_server.url,
        "REDIS_TIMEOUT_SECONDS": "0.5",
        "REDIS_RETRY_SECONDS": "1",
        "STREAM_STALE_AFTER_SECONDS": str(STALE_AFTER),
        "STREAM_HEARTBEAT_SECONDS": "0.5",
        "CHAT_SAVE_INTERVAL_SECONDS": "0.2",
        "CHAT_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
        "CHAT_MAX_CONCURRENT_STREAMS": str(MAX_CONCURRENT),
        "METRICS_TOKEN": "scale-out-metrics-token",
    }
    with running_stack(db_kind, module_tmp, extra_env=extra) as running:
        yield running


@pytest.fixture(scope="module")
def process_b(stack: Stack) -> Iterator[Server]:
    """A second stream process on its own port: same database, same Redis."""
    server = stack.stream_server(free_port())
    server.start()
    yield server
    server.stop()


def on(stack: Stack, server: Server, client: ChatClient) -> ChatClient:
    """The same user's client, talking to `server` instead of process A."""
    other = ChatClient(stack.app_url, f"http://localhost:{server.port}")
    other.http.cookies = client.http.cookies
    return other


def test_resume_on_b_gets_exactly_the_rest(stack: Stack, process_b: Server, make_client: Any):
    a = make_client()
    token = a.token()
    message = "resume elsewhere " + directive(tokens=30, pace=0.03)
    first = a.stream({"message": message}, token=token, stop_after=4)  # then the client drops
    assert [e.type for e in first.events] == ["start", "content", "content", "content"]
    last_id = first.events[-1].id

    rest = on(stack, process_b, a).resume(first.message_id, last_id, token=token)

    assert rest.status == 200
    assert_ids_increase([e.id for e in rest.events], after=last_id)
    assert rest.final.type == "done"
    assert "start" not in [e.type for e in rest.events]  # token by token, not a replay
    assert answer_text(first.events + rest.events) == expected_text(message)


def test_the_wsgi_fallback_resumes_from_the_same_log(stack: Stack, make_client: Any) -> None:
    a = make_client()
    token = a.token()
    message = "resume on c3-app " + directive(tokens=30, pace=0.03)
    first = a.stream({"message": message}, token=token, stop_after=3)
    last_id = first.events[-1].id

    rest = a.resume(first.message_id, last_id, via="app")  # gunicorn, session cookie

    assert rest.status == 200
    assert_ids_increase([e.id for e in rest.events], after=last_id)
    assert rest.final.type == "done"
    assert answer_text(first.events + rest.events) == expected_text(message)


def test_stop_from_b_ends_the_generation_on_a(stack: Stack, process_b: Server, make_client: Any):
    a = make_client()
    token = a.token()
    first = a.stream({"message": "stop me " + SLOW}, token=token, stop_after=2)
    results: list = []
    reader = threading.Thread(
        target=lambda: results.append(a.resume(first.message_id, first.events[-1].id, token=token))
    )
    reader.start()
    time.sleep(0.3)
    stopped_at = time.monotonic()
    response = on(stack, process_b, a).stop(first.message_id, token=token)
    assert response.status_code == 200, response.text
    reader.join(10)
    [followed] = results
    assert followed.final.type == "done"
    assert followed.final.data["finish_reason"] == "stopped"
    assert followed.final.at - stopped_at < 2.0
    stored = a.history(first.first("start").data["conversation_id"])[-1]
    assert stored["status"] == "stopped"
    assert stored["content"] == answer_text(first.events + followed.events)


def test_the_cap_on_generations_at_once_holds_across_both(stack, process_b, make_client):
    a = make_client()
    token = a.token()
    b = on(stack, process_b, a)
    # One slow generation on each process (the clients drop; the generations go on).
    running = [c.stream({"message": "slow " + SLOW}, token=token, stop_after=1) for c in (a, b)]
    assert [r.status for r in running] == [200, 200]
    try:
        for client in (a, b):
            refused = client.stream({"message": "third " + directive(tokens=1)}, token=token)
            assert refused.status == 429
            assert refused.final.data["code"] == "rate_limited"
        other = make_client()  # another user is not limited by this one
        assert other.stream({"message": directive(tokens=1)}, token=other.token()).status == 200
    finally:
        for result in running:
            a.stop(result.message_id, token=token)
    # Stopped: the slots are free again, on either process.
    assert b.stream({"message": directive(tokens=1)}, token=token).final.type == "done"


def test_the_rate_limit_counts_requests_to_both(stack, process_b, make_client) -> None:
    a = make_client()
    token = a.token()
    b = on(stack, process_b, a)
    quick = {"message": directive(tokens=1)}
    for index in range(RATE_LIMIT):
        client = a if index % 2 else b
        assert client.stream(quick, token=token).final.type == "done"
    for client in (a, b):
        refused = client.stream(quick, token=token)
        assert refused.status == 429
        assert refused.final.data["code"] == "rate_limited"


def test_redis_stopped_mid_test_streams_still_complete(
    stack: Stack, process_b: Server, make_client: Any, redis_server: RedisServer
) -> None:
    a = make_client()
    token = a.token()
    redis_server.stop()
    try:
        for server_url in (stack.stream_url, f"http://localhost:{process_b.port}"):
            client = ChatClient(stack.app_url, server_url)
            message = "no redis " + directive(tokens=4)
            started = time.monotonic()
            result = client.stream({"message": message}, token=token, timeout=15)
            assert result.final.type == "done"
            assert result.text == expected_text(message)
            assert time.monotonic() - started < 10  # no request waits on the dead Redis
            health = httpx.get(f"{server_url.replace('localhost', '127.0.0.1')}/health/")
            assert health.status_code == 200
            assert health.json()["status"] == "degraded"
            assert health.json()["redis"] == "unavailable"
            assert health.json()["database"] == "ok"
        app_health = httpx.get(f"{stack.app_url}/health/", timeout=10).json()
        assert app_health["redis"] == "unavailable"
    finally:
        redis_server.start()
    # Back: the next health check sees it again.
    health = httpx.get(f"http://127.0.0.1:{stack.stream_port}/health/", timeout=10).json()
    assert health == {**health, "status": "ok", "redis": "ok"}


def test_sigkill_a_then_b_ends_it_interrupted_with_the_logged_text(
    stack: Stack, process_b: Server, make_client: Any
) -> None:
    a = make_client()
    token = a.token()
    first = a.stream(
        {"message": "die midway " + directive(tokens=400, pace=0.02)}, token=token, stop_after=6
    )
    time.sleep(0.5)  # some more tokens reach the log
    assert stack.stream is not None
    stack.stream.signal(signal.SIGKILL)
    stack.stream.process.wait(10)
    killed_at = time.monotonic()
    try:
        rest = on(stack, process_b, a).resume(first.message_id, first.events[-1].id, token=token)
        assert rest.final.type == "error"
        assert rest.final.data["code"] == "interrupted"
        # Noticed within the window after the producer's last sign of life (plus checks).
        assert rest.final.at - killed_at < STALE_AFTER + 3
        logged = answer_text(first.events + rest.events)
        assert len(logged) > len(answer_text(first.events))
        stored = a.history(first.first("start").data["conversation_id"])[-1]
        assert stored["status"] == "interrupted"
        assert stored["content"] == logged
    finally:
        stack.stream.start()

"""STREAM_WORKERS=2: `python asgi_stream.py` serves one port with two processes sharing
Redis; any worker resumes any message, and one /metrics scrape sums both workers."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import metrics
from tests.support.chat_client import ChatClient
from tests.support.coalesced import assert_ids_increase
from tests.support.fake_upstream import directive, expected_chunks, expected_text
from tests.support.metrics import Samples
from tests.support.redis_server import RedisServer
from tests.support.servers import ARTIFACTS, Server, Stack, free_port, running_stack
from tests.support.sse import answer_text

pytestmark = [pytest.mark.integration, pytest.mark.redis]

TOKEN = "workers-metrics-token"


@pytest.fixture(scope="module")
def stack(db_kind: str, module_tmp: Path, redis_server: RedisServer) -> Iterator[Stack]:
    extra = {"REDIS_URL": redis_server.url, "METRICS_TOKEN": TOKEN}
    with running_stack(db_kind, module_tmp, extra_env=extra) as running:
        yield running


@pytest.fixture(scope="module")
def workers(stack: Stack) -> Iterator[Server]:
    port = free_port()
    env = stack.env()
    env.update({"PORT": str(port), "HOST": "127.0.0.1", "STREAM_WORKERS": "2"})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # asgi_stream.py makes a fresh one
    server = Server(
        "asgi-stream-workers",
        [sys.executable, "asgi_stream.py"],
        env,
        port,
        ARTIFACTS / "server-logs",
    )
    server.start()
    wait_until_both_started(server)
    yield server
    server.stop()


def wait_until_both_started(server: Server, timeout: float = 60) -> None:
    """The server counts as up once one worker answers /health/; on a busy machine (make
    test's parallel run) the other may still be starting. Each logs when it is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log_text().count("Application startup complete.") >= 2:
            return
        time.sleep(0.1)
    raise AssertionError(f"the two stream workers did not both start:\n{server.log_text()}")


def scrape(port: int) -> Samples:
    return metrics.scrape(f"http://127.0.0.1:{port}", TOKEN)


def test_two_workers_start_and_report_redis(workers: Server) -> None:
    health = httpx.get(f"http://127.0.0.1:{workers.port}/health/").json()
    assert health["status"] == "ok" and health["redis"] == "ok"
    assert workers.log_text().count("Started server process") == 2


def test_twenty_resumes_in_a_row_all_succeed(stack: Stack, workers: Server, make_client: Any):
    client = make_client()
    token = client.token()
    on_workers = ChatClient(stack.app_url, f"http://localhost:{workers.port}")
    message = "resume me twenty times " + directive(tokens=30, pace=0.02)
    first = on_workers.stream({"message": message}, token=token, stop_after=2)
    whole = on_workers.resume(first.message_id, 0, token=token)
    assert whole.final.type == "done"
    assert answer_text(whole.events) == expected_text(message)
    # The log holds `start` (id 1), then one event per chunk: after id k, exactly the
    # chunks from k - 1 on (sent as few events as the reader found waiting).
    chunks = expected_chunks(message)
    for after in range(1, 21):
        rest = on_workers.resume(first.message_id, after, token=token)
        assert rest.status == 200
        assert_ids_increase([e.id for e in rest.events], after)
        assert "start" not in [e.type for e in rest.events]
        assert answer_text(rest.events) == "".join(chunks[after - 1 :]), after
        assert (rest.final.id, rest.final.data) == (whole.final.id, whole.final.data), after


def test_one_scrape_shows_the_sum_of_both_workers(
    stack: Stack, workers: Server, make_client: Any
) -> None:
    client = make_client()
    token = client.token()
    on_workers = ChatClient(stack.app_url, f"http://localhost:{workers.port}")
    before = scrape(workers.port)
    count = 8
    for index in range(count):
        result = on_workers.stream({"message": f"m{index} " + directive(tokens=2)}, token=token)
        assert result.final.type == "done"
    key = ("c3_streams_total", (("status", "complete"),))
    for _ in range(4):  # whichever worker answers the scrape, the sum is the same
        assert scrape(workers.port).get(key, 0) == before.get(key, 0) + count

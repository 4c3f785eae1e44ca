"""GET /metrics and /health/ on both real services: Prometheus text that parses, counters
that move as streams run, and no metrics without the bearer token."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import metrics
from tests.support.fake_upstream import directive, expected_text
from tests.support.metrics import Samples, value
from tests.support.servers import Stack, running_stack

pytestmark = pytest.mark.integration

TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def stack(db_kind: str, module_tmp: Path) -> Iterator[Stack]:
    extra = {"METRICS_TOKEN": TOKEN, "CHAT_MAX_CONCURRENT_STREAMS": "1"}
    with running_stack(db_kind, module_tmp, extra_env=extra) as running:
        yield running


def scrape(base_url: str) -> Samples:
    return metrics.scrape(base_url, TOKEN)


def base_url(stack: Stack, via: str) -> str:
    return f"http://127.0.0.1:{stack.app_port if via == 'app' else stack.stream_port}"


@pytest.mark.parametrize("via", ["stream", "app"])
def test_metrics_are_refused_without_the_token(stack: Stack, via: str) -> None:
    url = f"{base_url(stack, via)}/metrics"
    assert httpx.get(url, timeout=10).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert wrong.status_code == 401
    assert "c3_" not in wrong.text


@pytest.mark.parametrize("via", ["stream", "app"])
def test_counters_move_as_streams_run(stack: Stack, make_client: Any, via: str) -> None:
    client = make_client()
    token = client.token()
    before = scrape(base_url(stack, via))

    message = f"count me ({via}) " + directive(tokens=5)
    result = client.stream({"message": message}, via=via, token=token)
    assert result.final.type == "done"
    assert result.text == expected_text(message)
    failed = client.stream({"message": directive(status=400)}, via=via, token=token)
    assert failed.final.type == "error"

    after = scrape(base_url(stack, via))
    assert value(after, "c3_streams_total", status="complete") == (
        value(before, "c3_streams_total", status="complete") + 1
    )
    assert value(after, "c3_streams_total", status="error") == (
        value(before, "c3_streams_total", status="error") + 1
    )
    assert value(after, "c3_tokens_relayed_total") >= value(before, "c3_tokens_relayed_total") + 5
    errors_before = sum(v for (n, _), v in before.items() if n == "c3_upstream_errors_total")
    errors_after = sum(v for (n, _), v in after.items() if n == "c3_upstream_errors_total")
    assert errors_after == errors_before + 1
    assert value(after, "c3_time_to_first_token_seconds_count") == (
        value(before, "c3_time_to_first_token_seconds_count") + 1
    )
    assert value(after, "c3_inter_token_gap_seconds_count") >= (
        value(before, "c3_inter_token_gap_seconds_count") + 4
    )
    assert value(after, "c3_streams_active") == 0


def test_refusals_are_counted_by_reason(stack: Stack, make_client: Any) -> None:
    client = make_client()
    token = client.token()
    before = scrape(base_url(stack, "stream"))
    seen: list = []

    slow = threading.Thread(
        target=lambda: seen.append(
            client.stream({"message": directive(tokens=40, pace=0.05)}, token=token)
        )
    )
    slow.start()
    try:
        # The cap is 1: while the slow one runs, a second is refused.
        for _ in range(100):
            during = scrape(base_url(stack, "stream"))
            if value(during, "c3_streams_active") >= 1:
                break
            time.sleep(0.05)
        assert value(during, "c3_streams_active") == 1
        refused = client.stream({"message": "second"}, token=token)
        assert refused.status == 429
    finally:
        slow.join(30)
    after = scrape(base_url(stack, "stream"))
    assert value(after, "c3_requests_refused_total", reason="too_many_streams") == (
        value(before, "c3_requests_refused_total", reason="too_many_streams") + 1
    )
    assert seen and seen[0].final.type == "done"


@pytest.mark.parametrize("via", ["stream", "app"])
def test_health_reports_database_and_redis(stack: Stack, via: str) -> None:
    response = httpx.get(f"{base_url(stack, via)}/health/", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["redis"] == "not_configured"

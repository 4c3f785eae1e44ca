"""The answer really streams: under gunicorn (Django's WSGI fallback, through the sync
bridge) as well as through the stream service. A buffered response would deliver every
event at the end; here the first words must arrive long before the last.

Only ratios of one stream's own timings are asserted, never absolute times.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.support.fake_upstream import directive, expected_text
from tests.support.servers import Stack

pytestmark = pytest.mark.integration

TOKENS, PACE = 8, 0.25  # about 1.75 s from the first token to the last


@pytest.mark.parametrize("via", ["app", "stream"])
def test_slow_answer_arrives_progressively(stack: Stack, make_client: Any, via: str) -> None:
    client = make_client()
    message = f"take your time ({via}) " + directive(tokens=TOKENS, pace=PACE)
    token = client.token()
    # The first stream of a fresh server process pays for imports and connections (about
    # half a second here); that is start-up, not buffering, so it is kept out of the ratio.
    warm_up = client.stream({"message": "warm up " + directive(tokens=1)}, via=via, token=token)
    assert warm_up.final.type == "done"

    sent_at = time.monotonic()
    result = client.stream({"message": message}, via=via, token=token)

    assert result.status == 200
    assert result.final.type == "done"
    assert result.text == expected_text(message)
    contents = [e for e in result.events if e.type == "content"]
    assert len(contents) == TOKENS
    total = result.final.at - sent_at
    first = contents[0].at - sent_at
    # Streaming: the first word at a small fraction of the whole answer's time.
    assert first < 0.4 * total, (first, total)
    # And the words keep coming one by one, not in a lump at the end.
    spread = contents[-1].at - contents[0].at
    assert spread > 0.5 * total, (spread, total)
    arrivals = [e.at for e in contents]
    assert arrivals == sorted(arrivals)

    history = client.history(result.first("start").data["conversation_id"])
    assert [(m["role"], m["status"]) for m in history[-2:]] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert history[-2]["content"] == message
    assert history[-1]["content"] == expected_text(message)
    assert history[-1]["id"] == result.message_id


def test_app_fallback_serves_other_requests_while_streaming(stack: Stack, make_client: Any) -> None:
    """A long stream holds one gunicorn thread, not the worker: the app stays responsive."""
    client = make_client()
    message = "long " + directive(tokens=TOKENS, pace=PACE)
    results: dict[str, Any] = {}

    def stream() -> None:
        results["stream"] = client.stream({"message": message}, via="app")

    worker = threading.Thread(target=stream)
    started = time.monotonic()
    worker.start()
    try:
        stack.upstream.wait_for(lambda s: s["active_streams"] >= 1, timeout=10)
        health_at = time.monotonic()
        health = client.http.get("/health/")
        history_status = client.http.get("/api/ai/chat/history/").status_code
        answered_at = time.monotonic()
    finally:
        worker.join(timeout=60)

    stream_result = results["stream"]
    total = stream_result.final.at - started
    assert health.status_code == 200 and history_status == 200
    assert answered_at - health_at < 0.4 * total, (answered_at - health_at, total)
    assert stream_result.text == expected_text(message)

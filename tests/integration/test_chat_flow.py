"""End to end through the real servers: login form → token → stream → history."""

from __future__ import annotations

import pytest

from tests.support.coalesced import assert_ids_increase
from tests.support.fake_upstream import directive, expected_text

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("via", ["stream", "app"])
def test_stream_and_read_back(stack, make_client, via):
    client = make_client()
    message = "hello " + directive(tokens=7)
    result = client.stream({"message": message}, via=via, token=client.token())

    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert result.headers["cache-control"] == "no-cache, no-transform"
    assert result.headers["x-accel-buffering"] == "no"
    types = [e.type for e in result.events]
    assert types[0] == "start" and types[-1] == "done"
    assert set(types[1:-1]) == {"content"}
    assert_ids_increase([e.id for e in result.events])
    assert result.retry == 3000
    assert result.text == expected_text(message)
    done = result.final.data
    assert done["message_id"] == result.message_id
    assert done["finish_reason"] == "stop"
    assert done["usage"]["completion_tokens"] > 0

    history = client.history(result.first("start").data["conversation_id"])
    assert [(m["role"], m["status"]) for m in history] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert history[0]["content"] == message
    assert history[1]["content"] == expected_text(message)
    assert history[1]["id"] == result.message_id

"""Issue item 5: `: ping` comments every STREAM_HEARTBEAT_SECONDS while no event is due
(a slow first token included), `retry:` on the first event, and the headers that keep
proxies from buffering or transforming the stream."""

from __future__ import annotations

import pytest

from tests.support.coalesced import assert_ids_increase
from tests.support.fake_upstream import directive, expected_text

from .conftest import PROFILES

pytestmark = pytest.mark.integration

HEARTBEAT = float(PROFILES["faults"]["STREAM_HEARTBEAT_SECONDS"])
OPENAI_TIMEOUT = float(PROFILES["faults"]["OPENAI_TIMEOUT"])


@pytest.mark.parametrize("via", ["stream", "app"])
def test_pings_keep_a_slow_first_token_alive(stack, make_user, via):
    first_delay = 4 * HEARTBEAT
    assert first_delay < OPENAI_TIMEOUT  # a slow model, not a timed-out one
    user = make_user()
    message = "slow start " + directive(tokens=5, first_delay=first_delay)

    result = user.post_stream({"message": message}, via=via)

    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert result.headers["cache-control"] == "no-cache, no-transform"
    assert result.headers["x-accel-buffering"] == "no"
    # `start` goes out at once; then pings until the first token.
    assert result.types[0] == "start"
    first_content = next(e for e in result.events if e.type == "content")
    waiting = [p for p in result.pings if result.start.at < p < first_content.at]
    assert set(result.comments) == {": ping"}
    # About one per heartbeat (timed at the client, so judged by count and median).
    assert 3 <= len(waiting) <= first_delay / HEARTBEAT + 1, (len(waiting), result.pings)
    marks = [result.start.at, *waiting]
    gaps = sorted(b - a for a, b in zip(marks, marks[1:], strict=False))
    assert 0.5 * HEARTBEAT < gaps[len(gaps) // 2] < 2 * HEARTBEAT, gaps
    # `retry:` once, on the first event only.
    assert result.retries == [3000]
    assert result.retry_on == [0]
    assert_ids_increase(result.ids)
    assert result.final.type == "done"
    assert result.text == expected_text(message)
    stored = user.stored(result.conversation_id, result.message_id)
    assert (stored["status"], stored["content"]) == ("complete", expected_text(message))


@pytest.mark.parametrize("via", ["stream", "app"])
def test_pings_keep_a_quiet_resume_alive(stack, make_user, via):
    """A resumed stream waiting for the next token gets pings too, and its own `retry:`."""
    user = make_user()
    message = "pause " + directive(tokens=4, first_delay=4 * HEARTBEAT)
    first = user.post_stream({"message": message}, via=via, stop_after=1)

    resumed = user.resume(first.message_id, 1, via=via)

    waiting = [p for p in resumed.pings if p < resumed.events[0].at]
    assert len(waiting) >= 2
    assert resumed.retries == [3000] and resumed.retry_on == [0]
    assert resumed.headers["cache-control"] == "no-cache, no-transform"
    assert resumed.headers["x-accel-buffering"] == "no"
    assert first.text + resumed.text == expected_text(message)
    stored = user.wait_stored(first.conversation_id, first.message_id)
    assert (stored["status"], stored["content"]) == ("complete", expected_text(message))

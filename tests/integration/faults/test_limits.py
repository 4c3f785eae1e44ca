"""Issue item 9: per-user limits on generations at once (CHAT_MAX_CONCURRENT_STREAMS) and
new streams per minute (CHAT_RATE_LIMIT_PER_MINUTE): 429 `rate_limited` with an integer
Retry-After, other users unaffected, nothing stored for a refused request."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.fake_upstream import directive, expected_text

from .conftest import PROFILES
from .helpers import wait_until

pytestmark = pytest.mark.integration

VIAS = ["stream", "app"]
MAX_CONCURRENT = int(PROFILES["faults"]["CHAT_MAX_CONCURRENT_STREAMS"])
PER_MINUTE = int(PROFILES["faults"]["CHAT_RATE_LIMIT_PER_MINUTE"])


def assert_rate_limited(result, via: str, *, at_most: int) -> None:
    assert result.status == 429
    assert [(e.type, e.data["code"]) for e in result.events] == [("error", "rate_limited")]
    retry_after = result.headers["retry-after"]
    assert re.fullmatch(r"[1-9][0-9]*", retry_after), retry_after
    assert int(retry_after) <= at_most
    if via == "stream":
        # The page (another origin) must be allowed to read it.
        exposed = result.headers["access-control-expose-headers"].lower()
        assert "retry-after" in exposed


@pytest.mark.parametrize("via", VIAS)
def test_concurrent_generations_per_user(stack, make_user, via):
    user, other = make_user(), make_user()
    slow = directive(tokens=300, pace=0.02)  # six seconds unless stopped
    seen: list[list] = [[] for _ in range(MAX_CONCURRENT)]

    with ThreadPoolExecutor(MAX_CONCURRENT) as pool:
        running = [
            pool.submit(
                user.post_stream, {"message": f"slow {i} " + slow}, via=via, on_event=seen[i].append
            )
            for i in range(MAX_CONCURRENT)
        ]
        wait_until(lambda: all(seen), what="both generations to start")

        refused = user.post_whole({"message": "one too many " + directive(tokens=2)}, via=via)
        assert_rate_limited(refused, via, at_most=60)
        # Nothing stored for it: two questions and two answers so far.
        assert user.message_count() == 2 * MAX_CONCURRENT
        # Another user is not limited by this one.
        theirs = other.post_stream({"message": directive(tokens=3)}, via=via)
        assert theirs.final.type == "done"
        assert theirs.text == expected_text(directive(tokens=3))

        for events in seen:
            stopped = user.stop(events[0].data["message_id"], via=via)
            assert stopped.json()["status"] == "stopped"
        for future in running:
            assert future.result(timeout=10).final.data["finish_reason"] == "stopped"

    # A finished generation frees its slot at once.
    again = user.post_stream({"message": "now " + directive(tokens=2)}, via=via)
    assert again.final.type == "done"
    assert user.message_count() == 2 * MAX_CONCURRENT + 2


@pytest.mark.parametrize("via", VIAS)
def test_new_streams_per_minute(stack, make_user, via):
    user, other = make_user(), make_user()
    for i in range(PER_MINUTE):
        result = user.post_stream({"message": f"quick {i} " + directive(tokens=1)}, via=via)
        assert result.final.type == "done"

    for _ in range(2):  # a refused request does not reset or extend anything
        refused = user.post_whole({"message": "one more " + directive(tokens=1)}, via=via)
        assert_rate_limited(refused, via, at_most=60)
    assert user.message_count() == 2 * PER_MINUTE
    theirs = other.post_stream({"message": directive(tokens=2)}, via=via)
    assert theirs.final.type == "done"
    assert other.message_count() == 2

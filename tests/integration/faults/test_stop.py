"""Issue item 3: POST /api/ai/chat/stream/<id>/stop/ cancels the generation (and with it
the upstream request), ends every reader with `done`/"stopped" and keeps the partial text."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.coalesced import assert_ids_increase
from tests.support.fake_upstream import directive, expected_text

from .helpers import wait_until

pytestmark = pytest.mark.integration

VIAS = ["stream", "app"]


@pytest.mark.parametrize("via", VIAS)
def test_stop_cancels_the_generation_and_ends_every_reader(stack, make_user, via):
    user = make_user()
    # Ten seconds of answer if nobody stopped it.
    message = "long " + directive(tokens=400, pace=0.025)
    full = expected_text(message)
    before = stack.upstream.stats()
    seen: dict[str, list] = {"first": [], "second": []}

    with ThreadPoolExecutor(2) as pool:
        first_f = pool.submit(
            user.post_stream, {"message": message}, via=via, on_event=seen["first"].append
        )
        wait_until(lambda: len(seen["first"]) >= 3, what="the first reader's content")
        message_id = seen["first"][0].data["message_id"]
        second_f = pool.submit(user.resume, message_id, 0, via=via, on_event=seen["second"].append)
        wait_until(lambda: len(seen["second"]) >= 3, what="the second reader's content")
        stats = stack.upstream.stats()
        assert stats["active_streams"] == before["active_streams"] + 1

        stopped_at = time.monotonic()
        response = user.stop(message_id, via=via)
        first, second = first_f.result(timeout=10), second_f.result(timeout=10)

    assert response.status_code == 200, response.text
    assert response.json() == {"message_id": message_id, "status": "stopped"}
    for reader in (first, second):
        assert reader.ended_with_one_final()
        assert reader.final.type == "done"
        assert reader.final.data["finish_reason"] == "stopped"
        assert reader.final.data["message_id"] == message_id
        assert reader.final.at - stopped_at < 1.0
        assert_ids_increase(reader.ids)
    assert first.text == second.text
    assert 0 < len(first.text) < len(full) and full.startswith(first.text)

    # The upstream request was closed, not left running.
    stack.upstream.wait_for(
        lambda s: (
            s["active_streams"] == before["active_streams"]
            and s["client_disconnects"] == before["client_disconnects"] + 1
        )
    )
    stored = user.stored(first.conversation_id, message_id)
    assert (stored["status"], stored["finish_reason"]) == ("stopped", "stopped")
    assert stored["content"] == first.text

    # Idempotent: a second stop answers the same and changes nothing.
    again = user.stop(message_id, via=via)
    assert again.status_code == 200
    assert again.json() == {"message_id": message_id, "status": "stopped"}
    assert user.stored(first.conversation_id, message_id) == stored
    # A reader that comes later gets the stopped answer whole.
    later = user.resume(message_id, 0, via=via)
    assert later.text == first.text
    assert later.final.data["finish_reason"] == "stopped"


@pytest.mark.parametrize("via", VIAS)
def test_stop_of_another_users_message_is_not_found(stack, make_user, via):
    owner, other = make_user(), make_user()
    message = "mine " + directive(tokens=30, pace=0.02)
    started = threading.Event()
    seen: list = []

    def record(event) -> None:
        seen.append(event)
        started.set()

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(owner.post_stream, {"message": message}, via=via, on_event=record)
        assert started.wait(10)
        message_id = seen[0].data["message_id"]
        for target in (message_id, "not-a-uuid"):
            refused = other.stop(target, via=via)
            assert refused.status_code == 404
            assert refused.json()["error"]["code"] == "not_found"
        result = future.result(timeout=10)

    # The foreign stop changed nothing: the answer finished whole.
    assert result.final.data["finish_reason"] == "stop"
    assert result.text == expected_text(message)
    stored = owner.stored(result.conversation_id, message_id)
    assert (stored["status"], stored["content"]) == ("complete", expected_text(message))
    # Stopping a finished answer is harmless and reports its status.
    late = owner.stop(message_id, via=via)
    assert late.status_code == 200
    assert late.json() == {"message_id": message_id, "status": "complete"}
    assert owner.stored(result.conversation_id, message_id) == stored

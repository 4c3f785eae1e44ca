"""Issue items 1 and 2: the generation runs apart from the HTTP response, and a client can
pick the answer up again with Last-Event-ID, from the live log or from the database."""

from __future__ import annotations

import pytest

from ai_features.chat.service import REPLAY_ID_BASE
from tests.support.coalesced import assert_ids_increase
from tests.support.fake_upstream import directive, expected_text
from tests.support.sse import parse_sse_body

pytestmark = pytest.mark.integration

VIAS = ["stream", "app"]


def assert_ids_follow(result, after: int) -> None:
    assert_ids_increase(result.ids, after)


def assert_replay_ids_follow(result, after: int) -> None:
    """A replay from the database numbers its events in their own range (above
    REPLAY_ID_BASE), so that a later resume can tell them from live-log ids."""
    assert_ids_follow(result, max(after, REPLAY_ID_BASE))


@pytest.mark.parametrize("via", VIAS)
def test_client_drop_does_not_cancel_the_generation(stack, make_user, via):
    user = make_user()
    message = "drop me " + directive(tokens=20, pace=0.05)
    before = stack.upstream.stats()

    first = user.post_stream({"message": message}, via=via, stop_after=3)

    assert first.status == 200
    assert first.types == ["start", "content", "content"]
    assert_ids_follow(first, 0)
    # The client left while the answer was still being written.
    assert user.stored(first.conversation_id, first.message_id)["status"] == "streaming"
    stored = user.wait_stored(first.conversation_id, first.message_id)
    assert stored["status"] == "complete"
    assert stored["finish_reason"] == "stop"
    assert stored["content"] == expected_text(message)
    # The upstream was read to its end: the drop closed nothing but the client's socket.
    after = stack.upstream.wait_for(lambda s: s["active_streams"] == 0)
    assert after["completed"] - before["completed"] == 1
    assert after["client_disconnects"] == before["client_disconnects"]


RESUME_MODES = [
    pytest.param("stream", "header", id="stream-header"),
    pytest.param("stream", "query", id="stream-query-last-event-id"),
    pytest.param("stream", "eventsource", id="stream-query-token"),
    pytest.param("app", "header", id="app-header"),
    pytest.param("app", "query", id="app-query-last-event-id"),
]


@pytest.mark.parametrize(("via", "mode"), RESUME_MODES)
def test_disconnect_then_resume_yields_the_text_exactly_once(stack, make_user, via, mode):
    user = make_user()
    message = "resume me " + directive(tokens=20, pace=0.05)

    first = user.post_stream({"message": message}, via=via, stop_after=4)
    last_id = first.events[-1].id
    assert last_id == 4
    # Still generating: the resume below follows live events, not only a replay.
    assert user.stored(first.conversation_id, first.message_id)["status"] == "streaming"
    resumed = user.resume(
        first.message_id,
        last_id,
        via=via,
        query=mode in ("query", "eventsource"),
        query_token=mode == "eventsource",
    )

    assert resumed.status == 200
    assert resumed.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert_ids_follow(resumed, last_id)
    assert "start" not in resumed.types
    assert resumed.ended_with_one_final()
    assert resumed.final.type == "done"
    assert resumed.final.data["finish_reason"] == "stop"
    assert resumed.final.data["message_id"] == first.message_id
    assert first.text + resumed.text == expected_text(message)
    stored = user.stored(first.conversation_id, first.message_id)
    assert (stored["status"], stored["content"]) == ("complete", expected_text(message))


@pytest.mark.parametrize("via", VIAS)
def test_resume_after_the_end_gives_the_final_event_again(stack, make_user, via):
    user = make_user()
    message = directive(tokens=5)
    whole = user.post_stream({"message": message}, via=via)
    assert whole.final.type == "done"

    again = user.resume(whole.message_id, whole.final.id, via=via)

    assert [(e.id, e.data) for e in again.events] == [(whole.final.id, whole.final.data)]
    assert user.stored(whole.conversation_id, whole.message_id)["content"] == expected_text(message)


# The other process never saw the message, so its in-memory log is empty: it must answer
# from the database (start, the stored text as one content event, the final event).
CROSS = [
    pytest.param("stream", "app", "complete", id="stream-to-app-complete"),
    pytest.param("app", "stream", "complete", id="app-to-stream-complete"),
    pytest.param("stream", "app", "error", id="stream-to-app-error"),
    pytest.param("app", "stream", "error", id="app-to-stream-error"),
]


@pytest.mark.parametrize(("made_via", "resume_via", "outcome"), CROSS)
def test_finished_message_is_replayed_from_the_database(
    stack, make_user, made_via, resume_via, outcome
):
    user = make_user()
    if outcome == "complete":
        message = "stored " + directive(tokens=9)
        text = expected_text(message)
    else:
        message = "stored " + directive(tokens=9, drop_after=4)
        text = "".join(f"tok{i} " for i in range(4))
    original = user.post_stream({"message": message}, via=made_via)
    assert original.text == text

    for last_id in (None, 7):
        replay = user.resume(
            original.message_id,
            last_id,
            via=resume_via,
            query_token=resume_via == "stream",
            query=last_id is not None,
        )
        assert replay.status == 200
        assert replay.types == ["start", "content", original.final.type]
        assert_replay_ids_follow(replay, last_id or 0)
        assert replay.retries == [3000] and replay.retry_on == [0]
        assert replay.message_id == original.message_id
        assert replay.conversation_id == original.conversation_id
        assert replay.text == text
        if outcome == "complete":
            assert replay.final.data["finish_reason"] == "stop"
            assert replay.final.data["usage"] == original.final.data["usage"]
        else:
            assert replay.final.data["code"] == original.final.data["code"]
            assert replay.final.data["content"] == original.final.data["content"]
    stored = user.stored(original.conversation_id, original.message_id)
    assert stored["content"] == text
    assert stored["status"] == outcome


def test_message_still_generating_elsewhere_is_followed_from_the_database(stack, make_user):
    user = make_user()
    message = "follow " + directive(tokens=8, pace=0.1)
    first = user.post_stream({"message": message}, via="app", stop_after=2)

    # The stream service has no log for it: it polls the stored text until it settles.
    followed = user.resume(first.message_id, 2, via="stream")

    assert followed.types[0] == "start"  # tells the page to reset its text
    assert_replay_ids_follow(followed, 2)
    assert followed.ended_with_one_final()
    assert followed.final.type == "done"
    assert followed.text == expected_text(message)
    # It followed the text as it was saved, not one lump at the end.
    assert followed.types.count("content") >= 2
    stored = user.stored(first.conversation_id, first.message_id)
    assert (stored["status"], stored["content"]) == ("complete", expected_text(message))


@pytest.mark.parametrize("via", VIAS)
def test_only_the_owner_can_resume(stack, make_user, via):
    owner, other = make_user(), make_user()
    message = directive(tokens=3)
    original = owner.post_stream({"message": message}, via=via)

    for message_id in (original.message_id, "not-a-uuid", original.conversation_id):
        refused = other.resume(message_id, 0, via=via)
        assert refused.status == 404
        assert [(e.type, e.data["code"]) for e in refused.events] == [("error", "not_found")]

    # The owner still gets it; nothing changed.
    assert owner.resume(original.message_id, 0, via=via).text == expected_text(message)
    assert [m["status"] for m in owner.history(original.conversation_id)] == [
        "complete",
        "complete",
    ]
    assert other.message_count() == 0


def test_resume_needs_a_valid_token(stack, make_user):
    user = make_user()
    original = user.post_stream({"message": directive(tokens=3)})
    refused = user.resume(original.message_id, 0, query_token=True, token="forged")
    assert refused.status == 401
    assert [(e.type, e.data["code"]) for e in refused.events] == [("error", "unauthenticated")]
    no_id = user.resume(original.message_id, None, query=True)
    assert no_id.status == 200  # no Last-Event-ID at all: from the start
    assert no_id.text == expected_text(directive(tokens=3))
    stored = user.stored(original.conversation_id, original.message_id)
    assert (stored["status"], stored["content"]) == ("complete", expected_text(directive(tokens=3)))


def test_malformed_last_event_id_is_refused(stack, make_user):
    user = make_user()
    original = user.post_stream({"message": directive(tokens=3)})
    for via in VIAS:
        with user.http_for(via, 10) as http:
            response = http.get(
                f"{user.base_url(via)}/api/ai/chat/stream/{original.message_id}/",
                headers={**user.headers_for(via), "Last-Event-ID": "abc"},
            )
        refused = parse_sse_body(response.status_code, response.headers, response.content)
        assert refused.status == 400
        assert [(e.type, e.data["code"]) for e in refused.events] == [("error", "invalid_request")]
    assert [m["status"] for m in user.history(original.conversation_id)] == ["complete"] * 2

"""What a reader of an event log may receive: the logged events, runs of `content` joined
(ai_features.chat.events.coalesce_content), nothing lost, nothing twice."""

from __future__ import annotations

from ai_features.chat.events import ChatEvent


def assert_coalesced_from(
    received: list[ChatEvent], logged: list[ChatEvent], after: int = 0
) -> None:
    """Every received id is a logged id, in order; a received `content` event holds exactly
    the text of the logged events since the previous one (all `content`); any other event
    is the logged one itself; and the reader got to the log's end."""
    by_id = {event.id: event for event in logged}
    previous = after
    for event in received:
        assert event.id in by_id and event.id > previous, (event.id, previous)
        span = [e for e in logged if previous < e.id <= event.id]
        if event.type == "content":
            assert all(e.type == "content" for e in span), [e.type for e in span]
            assert event.data["content"] == "".join(e.data["content"] for e in span)
        else:
            assert span == [event], (span, event)
        previous = event.id
    assert previous == logged[-1].id, (previous, logged[-1].id)


def assert_ids_increase(ids: list[int], after: int = 0) -> None:
    """Event ids on the wire: strictly increasing from above `after`. Not consecutive: a
    reader that found several content events waiting sent them as one, with the last id."""
    assert ids and ids[0] > after, (ids, after)
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False)), ids

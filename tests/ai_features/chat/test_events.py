"""Coalescing what a reader finds waiting in the log (events.coalesce_content)."""

from __future__ import annotations

from ai_features.chat.events import (
    ChatEvent,
    coalesce_content,
    content_data,
    done_data,
    start_data,
)
from tests.support.coalesced import assert_coalesced_from


def log_of(*items: dict) -> list[ChatEvent]:
    return [ChatEvent(id=i, data=data) for i, data in enumerate(items, start=1)]


def test_a_run_of_content_is_one_event_with_the_last_id() -> None:
    logged = log_of(
        start_data("c", "m"),
        content_data("Hel"),
        content_data("lo "),
        content_data("world"),
        done_data("m", "stop", None),
    )
    merged = coalesce_content(logged)
    assert [(e.id, e.type) for e in merged] == [(1, "start"), (4, "content"), (5, "done")]
    assert merged[1].data == {"type": "content", "content": "Hello world"}
    assert_coalesced_from(merged, logged)


def test_a_single_event_and_separated_runs_are_left_as_they_are() -> None:
    one = log_of(content_data("a"))
    assert coalesce_content(one) == one
    logged = log_of(content_data("a"), start_data("c", "m"), content_data("b"))
    assert coalesce_content(logged) == logged


def test_any_batch_a_reader_gets_keeps_the_text_and_resume_points() -> None:
    logged = log_of(
        start_data("c", "m"),
        *(content_data(f"t{i} ") for i in range(10)),
        done_data("m", "stop", None),
    )
    # However the log is cut into the batches a reader happens to find, the result holds.
    for cut in range(1, len(logged)):
        first = coalesce_content(logged[:cut])
        rest = coalesce_content(logged[cut:])
        assert_coalesced_from(first + rest, logged)

"""The events of the streaming contract (see DESIGN.md), as plain dicts with an id.

A `start` event always means "this message's text starts here, from empty": clients reset
the answer on it, which keeps replays from the database and from the live log consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

START_TEXT = "チャットを開始します..."
FINAL_TYPES = frozenset({"done", "error"})


@dataclass(frozen=True, slots=True)
class ChatEvent:
    id: int
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return self.data["type"]

    @property
    def is_final(self) -> bool:
        return self.data["type"] in FINAL_TYPES


class Ping:
    """A keep-alive: sent as an SSE comment while no event is due."""


PING = Ping()


class StartFields(TypedDict):
    """start_data's keyword arguments, as the stored and the prepared message give them."""

    user_message_id: str | None
    parent_id: str | None
    model: str


def start_data(
    conversation_id: str,
    message_id: str,
    *,
    user_message_id: str | None = None,
    parent_id: str | None = None,
    model: str = "",
) -> dict[str, Any]:
    """`message_id` is the answer; `user_message_id` its question, whose parent is
    `parent_id` (None for a first question): where the page puts the turn in the tree."""
    return {
        "type": "start",
        "content": START_TEXT,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "user_message_id": user_message_id,
        "parent_id": parent_id,
        "model": model,
    }


def content_data(text: str) -> dict[str, Any]:
    return {"type": "content", "content": text}


def done_data(message_id: str, finish_reason: str, usage: dict[str, int] | None) -> dict[str, Any]:
    return {
        "type": "done",
        "content": "",
        "message_id": message_id,
        "finish_reason": finish_reason,
        "usage": usage,
    }


def error_data(code: str, message: str, message_id: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "error", "content": message, "code": code}
    if message_id is not None:
        data["message_id"] = message_id
    return data


def coalesce_content(events: list[ChatEvent]) -> list[ChatEvent]:
    """Each run of consecutive `content` events as one event: the joined text, with the id
    of the run's last event, so that a resume from that id goes on exactly after the text
    sent. A reader that fell behind (busy writing to a slow socket, or a busy loop) then
    catches up with one frame and one write instead of one per token; the text is the same.
    """
    if len(events) < 2:
        return events
    merged: list[ChatEvent] = []
    run: list[ChatEvent] = []
    for event in events:
        if event.data["type"] == "content":
            run.append(event)
            continue
        merged.extend(_joined(run))
        run = []
        merged.append(event)
    merged.extend(_joined(run))
    return merged


def _joined(run: list[ChatEvent]) -> list[ChatEvent]:
    if len(run) < 2:
        return run
    text = "".join(event.data["content"] for event in run)
    return [ChatEvent(id=run[-1].id, data=content_data(text))]

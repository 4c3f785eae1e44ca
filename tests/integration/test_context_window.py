"""What the model is sent as context, seen from the upstream's side: with `echo=1` the fake
upstream answers with the very messages it received, so the client's text, the stored
answer and the upstream's own record must all show the same context."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

from tests.support.fake_upstream import directive, expected_text
from tests.support.servers import Stack

pytestmark = pytest.mark.integration

MAX_CHAT_HISTORY = 14  # the default; the stack does not set it


def role_content(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def test_only_the_last_max_chat_history_messages_are_sent(stack: Stack, make_client: Any) -> None:
    client = make_client()
    token = client.token()
    first = client.stream({"message": "q0 " + directive(tokens=2)}, token=token)
    conversation_id = first.first("start").data["conversation_id"]
    for i in range(1, 9):
        result = client.stream(
            {"message": f"q{i} " + directive(tokens=2), "conversation_id": conversation_id},
            token=token,
        )
        assert result.final.type == "done"
    earlier = role_content(client.history(conversation_id))
    assert len(earlier) == 18  # nine exchanges

    message = "q9 " + directive(echo=1)
    stack.upstream.reset()
    result = client.stream({"message": message, "conversation_id": conversation_id}, token=token)

    system = {"role": "system", "content": settings.CHAT_SYSTEM_PROMPT}
    expected = [system, *earlier[-MAX_CHAT_HISTORY:], {"role": "user", "content": message}]
    # The upstream's record of what it received.
    (received,) = stack.upstream.requests()
    assert role_content(received["messages"]) == expected
    # The window starts at the third question: q0, q1 and their answers are left out.
    assert expected[1] == {"role": "user", "content": "q2 " + directive(tokens=2)}
    assert [m["role"] for m in expected[1:-1]] == ["user", "assistant"] * 7
    # What the client got, and what was stored, is the echo of exactly that.
    assert result.final.type == "done"
    assert result.text == expected_text(message, messages=expected)
    assert json.loads(result.text) == expected
    stored = client.history(conversation_id)
    assert len(stored) == 20
    assert stored[-2]["content"] == message
    assert stored[-1]["content"] == result.text
    assert stored[-1]["id"] == result.message_id


@pytest.mark.parametrize("via", ["stream", "app"])
def test_include_history_false_sends_only_system_and_the_new_message(
    stack: Stack, make_client: Any, via: str
) -> None:
    client = make_client()
    token = client.token()
    first = client.stream({"message": "remember 42 " + directive(tokens=2)}, token=token)
    conversation_id = first.first("start").data["conversation_id"]

    message = f"fresh start ({via}) " + directive(echo=1)
    stack.upstream.reset()
    result = client.stream(
        {"message": message, "conversation_id": conversation_id, "include_history": False},
        via=via,
        token=token,
    )

    expected = [
        {"role": "system", "content": settings.CHAT_SYSTEM_PROMPT},
        {"role": "user", "content": message},
    ]
    (received,) = stack.upstream.requests()
    assert role_content(received["messages"]) == expected
    assert result.final.type == "done"
    assert json.loads(result.text) == expected
    # Stored in the same conversation all the same.
    stored = client.history(conversation_id)
    assert [m["content"] for m in stored[-2:]] == [message, result.text]
    assert len(stored) == 4


def test_history_is_sent_by_default(stack: Stack, make_client: Any) -> None:
    client = make_client()
    token = client.token()
    first = client.stream({"message": "remember 42 " + directive(tokens=2)}, token=token)
    conversation_id = first.first("start").data["conversation_id"]

    message = "what did I say? " + directive(echo=1)
    stack.upstream.reset()
    result = client.stream({"message": message}, token=token)  # no id: the latest conversation

    (received,) = stack.upstream.requests()
    contents = [m["content"] for m in received["messages"]]
    assert contents[1:] == ["remember 42 " + directive(tokens=2), first.text, message]
    assert result.first("start").data["conversation_id"] == conversation_id
    assert json.loads(result.text) == role_content(received["messages"])

"""Regenerate and edit as versions, seen from the upstream's side: with `echo=1` the fake
upstream answers with the very messages it received, so what the model was sent, what the
client got and what the history API returns must agree. Both stream endpoints (the
stream service and c3-app's fallback) take the same fields; SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings

from tests.support.chat_client import ChatClient
from tests.support.fake_upstream import directive
from tests.support.servers import Stack, running_stack
from tests.support.sse import StreamResult

pytestmark = pytest.mark.integration

MODELS = "fake,fake-large"


@pytest.fixture(scope="module")
def stack(db_kind: str, module_tmp: Path) -> Iterator[Stack]:
    with running_stack(
        db_kind,
        module_tmp,
        extra_env={"OPENAI_MODELS": MODELS, "CHAT_MAX_INSTRUCTIONS_CHARS": "50"},
    ) as running:
        yield running


SYSTEM = {"role": "system", "content": settings.CHAT_SYSTEM_PROMPT}


def role_content(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def history(client: ChatClient, conversation_id: str, **params: str) -> dict[str, Any]:
    response = client.http.get(
        "/api/ai/chat/history/", params={"conversation_id": conversation_id, **params}
    )
    assert response.status_code == 200, response.text
    return response.json()


def turn(client: ChatClient, token: str, body: dict[str, Any], via: str = "stream"):
    result = client.stream(body, token=token, via=via)
    assert result.final.type == "done", result.events
    return result


def two_turns(
    client: ChatClient, token: str, q2: str, via: str
) -> tuple[str, StreamResult, str, StreamResult]:
    """A new conversation of two questions and their answers: (q1, first, its id, second)."""
    q1 = "q1 " + directive(tokens=2)
    first = turn(client, token, {"message": q1, "new_conversation": True}, via)
    conversation_id = first.first("start").data["conversation_id"]
    second = turn(client, token, {"message": q2, "conversation_id": conversation_id}, via)
    return q1, first, conversation_id, second


def make_current(client: ChatClient, conversation_id: str, **body: str) -> httpx.Response:
    """Make a message the conversation's current version (what the page's arrows do)."""
    return client.api("POST", f"/api/ai/conversations/{conversation_id}/current/", json=body)


@pytest.mark.parametrize("via", ["stream", "app"])
def test_regenerate_keeps_one_question_and_sends_only_the_path_above_it(
    stack: Stack, make_client: Any, via: str
) -> None:
    client = make_client()
    token = client.token()
    q2 = "q2 " + directive(echo=1)
    q1, first, conversation_id, second = two_turns(client, token, q2, via)

    stack.upstream.reset()
    again = turn(
        client, token, {"regenerate_message_id": second.message_id, "message": "ignored"}, via
    )

    expected = [
        SYSTEM,
        {"role": "user", "content": q1},
        {"role": "assistant", "content": first.text},
    ]
    expected.append({"role": "user", "content": q2})
    (received,) = stack.upstream.requests()
    assert role_content(received["messages"]) == expected  # no old answer, no second q2
    assert json.loads(again.text) == expected
    start = again.first("start").data
    assert start["conversation_id"] == conversation_id
    assert start["user_message_id"] == second.first("start").data["user_message_id"]
    assert start["parent_id"] == first.message_id
    assert start["model"] == "fake"

    shown = history(client, conversation_id)
    items = shown["history"]
    assert [m["content"] for m in items] == [q1, first.text, q2, again.text]
    assert items[-1]["id"] == again.message_id
    assert items[-1]["versions"] == {
        "index": 2,
        "count": 2,
        "ids": [second.message_id, again.message_id],
    }
    assert items[-2]["versions"]["count"] == 1  # the question exists once
    assert shown["conversation"]["current_message_id"] == again.message_id

    # Back to the first answer (1/2): it is on screen, and the next question follows it.
    switched = make_current(client, conversation_id, message_id=second.message_id)
    assert switched.status_code == 200, switched.text
    items = switched.json()["history"]
    assert [m["id"] for m in items][-1] == second.message_id
    assert items[-1]["versions"]["index"] == 1
    assert history(client, conversation_id)["history"] == items

    stack.upstream.reset()
    q3 = "q3 " + directive(echo=1)
    turn(client, token, {"message": q3, "conversation_id": conversation_id}, via)
    (received,) = stack.upstream.requests()
    assert [m["content"] for m in received["messages"][1:]] == [
        q1,
        first.text,
        q2,
        second.text,
        q3,
    ]

    every = history(client, conversation_id, all_versions="1")["history"]
    assert len(every) == 7  # q1 a1 q2 a2 a2' q3 a3
    assert {m["id"] for m in every} >= {second.message_id, again.message_id}


@pytest.mark.parametrize("via", ["stream", "app"])
def test_edit_sends_the_edited_question_only_and_keeps_the_original_as_a_version(
    stack: Stack, make_client: Any, via: str
) -> None:
    client = make_client()
    token = client.token()
    q2 = "original " + directive(tokens=3)
    q1, first, conversation_id, second = two_turns(client, token, q2, via)
    original_question = second.first("start").data["user_message_id"]

    stack.upstream.reset()
    edited_text = "edited " + directive(echo=1)
    edited = turn(
        client, token, {"message": edited_text, "edit_message_id": original_question}, via
    )

    expected = [
        SYSTEM,
        {"role": "user", "content": q1},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": edited_text},
    ]
    (received,) = stack.upstream.requests()
    assert role_content(received["messages"]) == expected
    start = edited.first("start").data
    assert start["user_message_id"] != original_question
    assert start["parent_id"] == first.message_id

    items = history(client, conversation_id)["history"]
    assert [m["content"] for m in items] == [q1, first.text, edited_text, edited.text]
    assert items[2]["versions"] == {
        "index": 2,
        "count": 2,
        "ids": [original_question, start["user_message_id"]],
    }
    assert items[3]["versions"]["count"] == 1  # the new question's own answer

    # Switching back to the original question shows its own answer below it.
    switched = make_current(client, conversation_id, message_id=original_question)
    assert [m["content"] for m in switched.json()["history"]] == [q1, first.text, q2, second.text]


def test_editing_the_first_question_makes_a_second_root(stack: Stack, make_client: Any) -> None:
    client = make_client()
    token = client.token()
    first = turn(client, token, {"message": "one " + directive(tokens=2), "new_conversation": True})
    conversation_id = first.first("start").data["conversation_id"]
    stack.upstream.reset()
    edited_text = "uno " + directive(echo=1)
    edited = turn(
        client,
        token,
        {"message": edited_text, "edit_message_id": first.first("start").data["user_message_id"]},
    )
    (received,) = stack.upstream.requests()
    assert role_content(received["messages"]) == [SYSTEM, {"role": "user", "content": edited_text}]
    assert edited.first("start").data["parent_id"] is None
    items = history(client, conversation_id)["history"]
    assert [m["content"] for m in items] == [edited_text, edited.text]
    assert items[0]["versions"]["index"] == 2 and items[0]["parent_id"] is None


def test_versions_refuse_foreign_and_wrong_messages(stack: Stack, make_client: Any) -> None:
    alice, bob = make_client(), make_client()
    token = alice.token()
    first = turn(alice, token, {"message": "mine " + directive(tokens=2), "new_conversation": True})
    conversation_id = first.first("start").data["conversation_id"]
    question_id = first.first("start").data["user_message_id"]
    bob_token = bob.token()

    # Bob can neither regenerate, edit nor switch to Alice's messages.
    assert bob.stream({"regenerate_message_id": first.message_id}, token=bob_token).status == 404
    body = {"message": "x", "edit_message_id": question_id}
    assert bob.stream(body, token=bob_token).status == 404
    switch = make_current(bob, conversation_id, message_id=first.message_id)
    assert switch.status_code == 404
    # Alice: a question is not an answer to regenerate, an answer is not a question to edit.
    wrong = alice.stream({"regenerate_message_id": question_id}, token=token)
    assert wrong.status == 400 and wrong.final.data["code"] == "invalid_request"
    wrong = alice.stream({"message": "x", "edit_message_id": first.message_id}, token=token)
    assert wrong.status == 400
    # Another conversation's message cannot become this one's current version.
    other = turn(
        alice, token, {"message": "other " + directive(tokens=1), "new_conversation": True}
    )
    switch = make_current(alice, conversation_id, message_id=other.message_id)
    assert switch.status_code == 404
    assert make_current(alice, conversation_id).status_code == 400
    # Nothing was stored by the refused requests.
    assert len(history(alice, conversation_id)["history"]) == 2


def test_new_conversation_creates_it_with_its_first_message_only(
    stack: Stack, make_client: Any
) -> None:
    client = make_client()
    token = client.token()
    assert client.http.get("/api/ai/conversations/").json()["conversations"] == []
    # Opening "New chat" three times is three page loads: no rows.
    for _ in range(3):
        assert client.http.get("/ai/chat/").status_code == 200
    assert client.http.get("/api/ai/conversations/").json()["conversations"] == []

    first = turn(client, token, {"message": "a " + directive(tokens=1), "new_conversation": True})
    second = turn(client, token, {"message": "b " + directive(tokens=1), "new_conversation": True})
    ids = [c["id"] for c in client.http.get("/api/ai/conversations/").json()["conversations"]]
    assert ids == [
        second.first("start").data["conversation_id"],
        first.first("start").data["conversation_id"],
    ]
    refused = client.stream(
        {"message": "c", "new_conversation": True, "conversation_id": ids[0]}, token=token
    )
    assert refused.status == 400


@pytest.mark.parametrize("via", ["stream", "app"])
def test_the_chosen_model_is_sent_upstream_stored_and_validated(
    stack: Stack, make_client: Any, via: str
) -> None:
    client = make_client()
    token = client.token()
    stack.upstream.reset()
    first = turn(
        client,
        token,
        {"message": "hi " + directive(tokens=2), "new_conversation": True, "model": "fake-large"},
        via,
    )
    conversation_id = first.first("start").data["conversation_id"]
    assert first.first("start").data["model"] == "fake-large"
    # The conversation keeps the model for the next turn.
    turn(
        client,
        token,
        {"message": "more " + directive(tokens=1), "conversation_id": conversation_id},
        via,
    )
    assert [r["model"] for r in stack.upstream.requests()] == ["fake-large", "fake-large"]
    conversation = client.http.get(f"/api/ai/conversations/{conversation_id}/").json()
    assert conversation["model"] == "fake-large"

    items = history(client, conversation_id)["history"]
    answer = items[1]
    assert answer["model"] == "fake-large"
    assert answer["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] == 2
    assert answer["usage"]["prompt_tokens"] > 0
    assert items[0]["usage"] is None  # a question has none

    # PATCH switches it back; an unknown model is a 400 there and on the stream.
    patched = client.api(
        "PATCH", f"/api/ai/conversations/{conversation_id}/", json={"model": "fake"}
    )
    assert patched.status_code == 200 and patched.json()["model"] == "fake"
    stack.upstream.reset()
    turn(
        client,
        token,
        {"message": "x " + directive(tokens=1), "conversation_id": conversation_id},
        via,
    )
    assert [r["model"] for r in stack.upstream.requests()] == ["fake"]
    bad = client.api("PATCH", f"/api/ai/conversations/{conversation_id}/", json={"model": "gpt-9"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    refused = client.stream(
        {"message": "x", "conversation_id": conversation_id, "model": "gpt-9"}, token=token, via=via
    )
    assert refused.status == 400 and refused.final.data["code"] == "invalid_request"
    assert len(history(client, conversation_id)["history"]) == 6  # the refusal stored nothing

    models = client.http.get("/api/ai/models/").json()
    assert models == {"models": ["fake", "fake-large"], "default": "fake"}


def test_instructions_are_sent_after_the_system_prompt_and_bounded(
    stack: Stack, make_client: Any
) -> None:
    client = make_client()
    token = client.token()
    first = turn(client, token, {"message": "a " + directive(tokens=1), "new_conversation": True})
    conversation_id = first.first("start").data["conversation_id"]
    url = f"/api/ai/conversations/{conversation_id}/"

    patched = client.api("PATCH", url, json={"instructions": "  Answer like a pirate.  "})
    assert patched.status_code == 200
    assert patched.json()["instructions"] == "Answer like a pirate."
    too_long = client.api("PATCH", url, json={"instructions": "x" * 51})
    assert too_long.status_code == 400
    assert client.api("PATCH", url, json={}).status_code == 400

    stack.upstream.reset()
    message = "b " + directive(echo=1)
    turn(client, token, {"message": message, "conversation_id": conversation_id})
    (received,) = stack.upstream.requests()
    assert role_content(received["messages"][:2]) == [
        SYSTEM,
        {"role": "system", "content": "Answer like a pirate."},
    ]
    assert received["messages"][-1]["content"] == message


def test_an_unknown_language_is_refused(stack: Stack, make_client: Any) -> None:
    client = make_client()
    bad = client.stream({"message": "hi", "language": "fr"}, token=client.token())
    assert bad.status == 400 and bad.final.data["code"] == "invalid_request"
    assert client.http.get("/api/ai/conversations/").json()["conversations"] == []

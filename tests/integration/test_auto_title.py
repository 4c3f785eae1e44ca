"""Automatic titles (CHAT_AUTO_TITLE=true, off in every other test): one small extra
request after the first answer, never before its final event; a rename by the user wins."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ai_features.chat.persistence import title_from
from ai_features.chat.titles import TITLE_PROMPT
from tests.support.fake_upstream import directive
from tests.support.servers import Stack, running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(db_kind: str, module_tmp: Path) -> Iterator[Stack]:
    with running_stack(db_kind, module_tmp, extra_env={"CHAT_AUTO_TITLE": "true"}) as running:
        yield running


def title_of(client: Any, conversation_id: str) -> str:
    return client.http.get(f"/api/ai/conversations/{conversation_id}/").json()["title"]


def wait_for_title(client: Any, conversation_id: str, old: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        title = title_of(client, conversation_id)
        if title != old:
            return title
        time.sleep(0.1)
    return title_of(client, conversation_id)


@pytest.mark.parametrize("via", ["stream", "app"])
def test_the_first_answer_gets_a_generated_title(stack: Stack, make_client: Any, via: str) -> None:
    client = make_client()
    token = client.token()
    stack.upstream.reset()
    question = "please help me plan a long trip " + directive(tokens=3)
    result = client.stream({"message": question, "new_conversation": True}, token=token, via=via)
    assert result.final.type == "done"
    conversation_id = result.first("start").data["conversation_id"]

    # The fake answers the title request like any other: tok0 tok1 tok2.
    assert wait_for_title(client, conversation_id, old=title_from(question)) == "tok0 tok1 tok2"
    chat, title_request = stack.upstream.requests()
    assert chat["stream"] is True
    assert not title_request.get("stream")
    assert title_request["messages"] == [
        {"role": "system", "content": TITLE_PROMPT},
        {"role": "user", "content": question},
    ]

    # Later answers ask for no more titles.
    again = client.stream(
        {"message": "and then? " + directive(tokens=1), "conversation_id": conversation_id},
        token=token,
        via=via,
    )
    assert again.final.type == "done"
    time.sleep(0.5)
    assert len(stack.upstream.requests()) == 3


def test_a_rename_by_the_user_wins(stack: Stack, make_client: Any) -> None:
    client = make_client()
    token = client.token()
    # The title request waits 1.5 s (first_delay applies to the non-streamed reply too).
    question = "slow title " + directive(tokens=2, first_delay=1.5)
    result = client.stream({"message": question, "new_conversation": True}, token=token)
    conversation_id = result.first("start").data["conversation_id"]
    renamed = client.api(
        "PATCH", f"/api/ai/conversations/{conversation_id}/", json={"title": "My own title"}
    )
    assert renamed.status_code == 200
    stack.upstream.wait_for(lambda stats: stats["completed"] >= 2, timeout=20)
    time.sleep(0.3)
    assert title_of(client, conversation_id) == "My own title"

"""Issue 8 item 8: CHAT_MAX_CONTEXT_CHARS bounds what is sent to the model. The oldest
history goes first; the system prompt and the new message always go. Checked on the fake
upstream's own record of what it received, on both databases and both servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.support.fake_upstream import directive
from tests.support.servers import Stack, running_stack

pytestmark = pytest.mark.integration

LIMIT = 1500


@pytest.fixture(scope="module")
def stack(db_kind: str, module_tmp: Path) -> Iterator[Stack]:
    extra = {"CHAT_MAX_CONTEXT_CHARS": str(LIMIT)}
    with running_stack(db_kind, module_tmp, extra_env=extra) as running:
        yield running


@pytest.mark.parametrize("via", ["stream", "app"])
def test_the_oldest_history_is_left_out_to_fit_the_limit(
    stack: Stack, make_client: Any, via: str
) -> None:
    client = make_client()
    token = client.token()
    conversation_id = None
    for i in range(6):  # six exchanges of ~300 characters each: 1800 over the limit alone
        body: dict[str, Any] = {"message": f"q{i} " + "x" * 260 + directive(tokens=2)}
        if conversation_id:
            body["conversation_id"] = conversation_id
        result = client.stream(body, via=via, token=token)
        assert result.final.type == "done"
        conversation_id = result.first("start").data["conversation_id"]
    earlier = [
        {"role": m["role"], "content": m["content"]} for m in client.history(conversation_id)
    ]

    message = "the new one " + directive(tokens=2)
    stack.upstream.reset()
    result = client.stream(
        {"message": message, "conversation_id": conversation_id}, via=via, token=token
    )
    assert result.final.type == "done"

    (received,) = stack.upstream.requests()
    sent = [{"role": m["role"], "content": m["content"]} for m in received["messages"]]
    assert sent[0] == {"role": "system", "content": settings.CHAT_SYSTEM_PROMPT}
    assert sent[-1] == {"role": "user", "content": message}
    history = sent[1:-1]
    # The newest messages, in order, as many as fit; the next older one would not have.
    assert history == earlier[len(earlier) - len(history) :]
    assert 0 < len(history) < len(earlier)
    assert sum(len(m["content"]) for m in sent) <= LIMIT
    next_older = earlier[len(earlier) - len(history) - 1]
    assert sum(len(m["content"]) for m in sent) + len(next_older["content"]) > LIMIT


def test_an_oversized_new_message_still_goes_with_the_system_prompt(
    stack: Stack, make_client: Any
) -> None:
    client = make_client()
    token = client.token()
    first = client.stream({"message": "short " + directive(tokens=2)}, token=token)
    conversation_id = first.first("start").data["conversation_id"]

    message = "y" * (LIMIT + 100) + directive(tokens=2)
    stack.upstream.reset()
    result = client.stream({"message": message, "conversation_id": conversation_id}, token=token)

    assert result.final.type == "done"
    (received,) = stack.upstream.requests()
    assert [(m["role"], m["content"]) for m in received["messages"]] == [
        ("system", settings.CHAT_SYSTEM_PROMPT),
        ("user", message),
    ]

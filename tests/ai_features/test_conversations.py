"""Selectors and services behind the conversation API (SQLite; the PostgreSQL search runs
in tests/integration/test_conversation_api.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from ai_features import conversations
from ai_features.chat.errors import InvalidRequest, NotFound
from ai_features.models import Conversation, Message

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def alice() -> Any:
    return User.objects.create_user("alice")


def conversation_with(owner: Any, *texts: str, title: str = "") -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title)
    parent = None
    for i, text in enumerate(texts):
        parent = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role="user" if i % 2 == 0 else "assistant",
            content=text,
        )
    conversation.current_message = parent
    conversation.save()
    return conversation


def test_the_list_marks_conversations_with_an_answer_streaming(alice: Any) -> None:
    quiet = conversation_with(alice, "q", "a")
    busy = conversation_with(alice, "q")
    Message.objects.create(conversation=busy, role="assistant", status="streaming")
    dead = conversation_with(alice, "q")
    stale = Message.objects.create(conversation=dead, role="assistant", status="streaming")
    Message.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - timedelta(hours=1))

    flags = {c.pk: c.streaming for c in conversations.list_conversations(alice)}

    # An answer whose process died long ago is not "still answering".
    assert flags == {quiet.pk: False, busy.pk: True, dead.pk: False}
    stale.refresh_from_db()
    assert stale.status == "interrupted"


def test_search_is_a_substring_of_title_or_text_on_sqlite(alice: Any) -> None:
    kyoto = conversation_with(alice, "京都の紅葉はいつ?", "十一月です")
    pasta = conversation_with(alice, "dinner ideas", title="Pasta night")
    conversation_with(User.objects.create_user("bob"), "京都")

    assert [c.pk for c in conversations.list_conversations(alice, "紅葉")] == [kyoto.pk]
    assert [c.pk for c in conversations.list_conversations(alice, "十一月")] == [kyoto.pk]
    assert [c.pk for c in conversations.list_conversations(alice, "  PASTA ")] == [pasta.pk]
    with pytest.raises(InvalidRequest):
        conversations.list_conversations(alice, "x" * 201)


def test_update_checks_every_field_before_storing_any(alice: Any, settings: Any) -> None:
    settings.OPENAI_MODELS = ["small", "large"]
    settings.CHAT_MAX_INSTRUCTIONS_CHARS = 10
    conversation = conversation_with(alice, "q", title="old")
    cid = str(conversation.pk)

    for changes in (
        {"title": "new", "model": "huge"},
        {"title": "new", "instructions": "x" * 11},
        {"instructions": 5},
        {"instructions": "bad\x00"},
        {"title": 3},
        {},
    ):
        with pytest.raises(InvalidRequest):
            conversations.update_conversation(alice, cid, changes)
    conversation.refresh_from_db()
    assert (conversation.title, conversation.model, conversation.instructions) == ("old", "", "")

    updated = conversations.update_conversation(
        alice, cid, {"title": " My  chat ", "model": "large", "instructions": " brief "}
    )
    assert (updated.title, updated.title_is_custom) == ("My chat", True)
    assert (updated.model, updated.instructions) == ("large", "brief")
    assert conversations.conversation_json(updated)["model"] == "large"
    reset = conversations.update_conversation(alice, cid, {"model": None})
    assert conversations.conversation_json(reset)["model"] == settings.OPENAI_MODEL
    with pytest.raises(NotFound):
        conversations.update_conversation(User.objects.create_user("bob"), cid, {"title": "x"})


def test_markdown_export_has_a_section_per_message(alice: Any) -> None:
    conversation = conversation_with(alice, "## not a heading of ours", "answer", title="T")
    Message.objects.filter(role="assistant").update(model="m1")
    _conversation, messages = conversations.export_conversation(alice, str(conversation.pk))

    text = conversations.export_markdown(conversation, messages)

    assert text.startswith("# T\n")
    assert "\n## User\n\n## not a heading of ours\n" in text
    assert text.endswith("\n## Assistant (m1)\n\nanswer\n")

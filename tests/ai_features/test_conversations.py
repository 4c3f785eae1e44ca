"""Selectors and services behind the conversation API (ai_features/conversations.py), on
SQLite and PostgreSQL (see `unit_database` in tests/ai_features/conftest.py): listing and
search (a substring everywhere, full-text words on PostgreSQL), history, deletion scoped to
the user, the field cleaners, and the exports."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from ai_features import conversations
from ai_features.chat.errors import InvalidRequest, NotFound
from ai_features.models import Conversation, Message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("unit_database")]

User = get_user_model()


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


def touched(conversation: Conversation, hours_ago: float) -> Conversation:
    """Set the conversation's last activity `hours_ago`."""
    when = timezone.now() - timedelta(hours=hours_ago)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=when)
    conversation.refresh_from_db()
    return conversation


def listed(user: Any, query: str = "") -> list[Any]:
    return [c.pk for c in conversations.list_conversations(user, query)]


# --- list_conversations ---------------------------------------------------------------------


def test_the_list_is_the_users_own_newest_activity_first(
    alice: Any, bob: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the user's conversations, ordered by last activity, at most MAX_LISTED."""
    middle = touched(conversation_with(alice, "b"), 2)
    newest = touched(conversation_with(alice, "c"), 1)
    oldest = touched(conversation_with(alice, "a"), 3)
    touched(conversation_with(bob, "bob's"), 0)

    assert listed(alice) == [newest.pk, middle.pk, oldest.pk]
    assert listed(alice, "   ") == [newest.pk, middle.pk, oldest.pk]
    monkeypatch.setattr(conversations, "MAX_LISTED", 2)
    assert listed(alice) == [newest.pk, middle.pk]
    assert listed(User.objects.create_user("carol")) == []


def test_search_never_finds_another_users_conversation(alice: Any, bob: Any) -> None:
    """A match in someone else's title or messages is not listed."""
    conversation_with(bob, "shared secret recipe", title="secret recipe")
    mine = conversation_with(alice, "nothing to see")

    assert listed(alice, "secret") == []
    assert listed(alice, "recipe secret") == []
    assert listed(alice, "nothing") == [mine.pk]


def test_search_matches_words_in_any_order_on_postgresql_only(
    alice: Any, unit_database: str
) -> None:
    """PostgreSQL full-text search (`simple` configuration) finds words of a message or
    the title in any order and case; SQLite matches only the substring as typed."""
    leaves = conversation_with(alice, "When do the autumn leaves turn red in Kyoto?")
    pasta = conversation_with(alice, "ideas?", title="Weekend pasta night")
    conversation_with(alice, "unrelated")

    full_text = unit_database == "postgresql"
    assert listed(alice, "kyoto LEAVES") == ([leaves.pk] if full_text else [])
    assert listed(alice, "night pasta") == ([pasta.pk] if full_text else [])
    # A substring (part of a word) matches on both.
    assert listed(alice, "utum") == [leaves.pk]
    assert listed(alice, "asta ni") == [pasta.pk]
    assert listed(alice, "kyoto snow") == []


def test_search_finds_japanese_text_by_substring_on_both(alice: Any) -> None:
    """Japanese has no spaces for a parser to split on: a substring matches on both
    databases, while two separate words of one unspaced sentence match on neither (the
    known limit of the `simple` configuration)."""
    kyoto = conversation_with(alice, "京都の紅葉は十一月が見頃です")
    conversation_with(alice, "大阪のたこ焼き")

    assert listed(alice, "見頃") == [kyoto.pk]
    assert listed(alice, "紅葉は十一月") == [kyoto.pk]
    assert listed(alice, "紅葉 十一月") == []


# --- history ----------------------------------------------------------------------------------


def branched(owner: Any) -> tuple[Conversation, dict[str, Message]]:
    """q1 -> a1 -> q2 -> {a2, a2b (regenerated, current)}."""
    conversation = Conversation.objects.create(owner=owner)
    made: dict[str, Message] = {}
    for name, parent, role in (
        ("q1", None, "user"),
        ("a1", "q1", "assistant"),
        ("q2", "a1", "user"),
        ("a2", "q2", "assistant"),
        ("a2b", "q2", "assistant"),
    ):
        made[name] = Message.objects.create(
            conversation=conversation,
            parent=made.get(parent or ""),
            role=role,
            content=f"text {name}",
        )
    conversation.current_message = made["a2b"]
    conversation.save()
    return conversation, made


def test_history_is_the_current_path_with_versions(alice: Any) -> None:
    """Only the versions on screen, oldest first; a regenerated answer knows it is 2 of 2."""
    conversation, made = branched(alice)

    shown, messages = conversations.history(alice, str(conversation.pk))

    assert shown == conversation
    assert [m["content"] for m in messages] == ["text q1", "text a1", "text q2", "text a2b"]
    assert messages[-1]["versions"] == {
        "index": 2,
        "count": 2,
        "ids": [str(made["a2"].pk), str(made["a2b"].pk)],
    }
    assert messages[-1]["parent_id"] == str(made["q2"].pk)
    assert messages[0]["versions"]["count"] == 1
    _, last_two = conversations.history(alice, str(conversation.pk), limit=2)
    assert [m["content"] for m in last_two] == ["text q2", "text a2b"]
    _, at_least_one = conversations.history(alice, str(conversation.pk), limit=0)
    assert [m["content"] for m in at_least_one] == ["text a2b"]


def test_history_with_all_versions_has_every_message(alice: Any) -> None:
    """`all_versions` includes the versions not on screen, each with its parent."""
    conversation, made = branched(alice)

    _, messages = conversations.history(alice, str(conversation.pk), all_versions=True)

    assert [m["id"] for m in messages] == [
        str(made[name].pk) for name in ("q1", "a1", "q2", "a2", "a2b")
    ]
    assert messages[3]["parent_id"] == str(made["q2"].pk)
    assert messages[3]["versions"]["index"] == 1


def test_history_defaults_to_the_latest_conversation_and_is_owned(alice: Any, bob: Any) -> None:
    """No id: the user's newest conversation (or none); another user's id: NotFound."""
    assert conversations.history(alice, None) == (None, [])
    touched(conversation_with(alice, "old"), 2)
    recent = touched(conversation_with(alice, "recent"), 1)
    bobs = conversation_with(bob, "bob's")

    shown, messages = conversations.history(alice, None)
    assert (shown, [m["content"] for m in messages]) == (recent, ["recent"])
    for foreign in (str(bobs.pk), "nope"):
        with pytest.raises(NotFound):
            conversations.history(alice, foreign)


# --- deleting ------------------------------------------------------------------------------------


def test_clear_history_empties_one_own_conversation(alice: Any, bob: Any) -> None:
    """Its messages go and its title resets; the user's other conversations and other
    users' stay; a foreign id is NotFound, a missing or malformed one InvalidRequest."""
    target = conversation_with(alice, "q", "a", "q2", title="Named")
    Conversation.objects.filter(pk=target.pk).update(title_is_custom=True)
    other = conversation_with(alice, "keep me")
    bobs = conversation_with(bob, "bob's", "answer")

    assert conversations.clear_history(alice, str(target.pk)) == 3

    target.refresh_from_db()
    assert (target.title, target.title_is_custom, target.current_message_id) == ("", False, None)
    assert not target.messages.exists()
    assert other.messages.count() == 1
    with pytest.raises(NotFound):
        conversations.clear_history(alice, str(bobs.pk))
    for bad in (None, "", "not-a-uuid"):
        with pytest.raises(InvalidRequest):
            conversations.clear_history(alice, bad)
    assert bobs.messages.count() == 2


def test_delete_conversation_only_deletes_the_users_own(alice: Any, bob: Any) -> None:
    """The owner deletes it with its messages; anyone else gets NotFound and changes
    nothing."""
    mine = conversation_with(alice, "q", "a")
    bobs = conversation_with(bob, "q")

    with pytest.raises(NotFound):
        conversations.delete_conversation(alice, str(bobs.pk))
    conversations.delete_conversation(alice, str(mine.pk))

    assert not Conversation.objects.filter(pk=mine.pk).exists()
    assert not Message.objects.filter(conversation_id=mine.pk).exists()
    assert Conversation.objects.filter(pk=bobs.pk).exists()


def test_delete_all_conversations_keeps_other_users_rows(alice: Any, bob: Any) -> None:
    """Every conversation and message of the user goes (the count is of all rows); the
    other user's remain."""
    conversation_with(alice, "q", "a")
    conversation_with(alice, "q")
    bobs = conversation_with(bob, "q", "a")
    rows = (
        Conversation.objects.filter(owner=alice).count()
        + Message.objects.filter(conversation__owner=alice).count()
    )

    assert conversations.delete_all_conversations(alice) == rows

    assert not Conversation.objects.filter(owner=alice).exists()
    assert Message.objects.filter(conversation=bobs).count() == 2
    assert conversations.delete_all_conversations(alice) == 0


# --- cleaning fields --------------------------------------------------------------------------


def test_clean_title_collapses_whitespace_and_drops_what_cannot_be_stored() -> None:
    """Whitespace runs become one space; NUL and lone surrogates become U+FFFD; bidi
    controls go; exactly MAX_TITLE_CHARS is allowed, one more is not; non-strings fail."""
    assert conversations.clean_title("  a \t\n b  ") == "a b"
    assert conversations.clean_title("x\x00y\ud800") == "x\ufffdy\ufffd"
    assert conversations.clean_title("\u202eevil\u2066") == "evil"
    limit = conversations.MAX_TITLE_CHARS
    assert conversations.clean_title("t" * limit) == "t" * limit
    assert conversations.clean_title(" " + "t" * limit + " ") == "t" * limit
    for bad in ("t" * (limit + 1), None, 5, ["t"]):
        with pytest.raises(InvalidRequest):
            conversations.clean_title(bad)


def test_clean_model_accepts_only_an_offered_model(settings: Any) -> None:
    """ "" and None mean the default; a model of OPENAI_MODELS is kept; others fail."""
    settings.OPENAI_MODELS = ["small", "large"]

    assert conversations.clean_model(None) == ""
    assert conversations.clean_model("") == ""
    assert conversations.clean_model("large") == "large"
    for bad in ("huge", "LARGE", 5, ["small"]):
        with pytest.raises(InvalidRequest):
            conversations.clean_model(bad)


def test_clean_instructions_bounds_and_storable_text(settings: Any) -> None:
    """None is empty, text is stripped, the limit is CHAT_MAX_INSTRUCTIONS_CHARS, and
    NUL, lone surrogates and non-strings are refused."""
    settings.CHAT_MAX_INSTRUCTIONS_CHARS = 12

    assert conversations.clean_instructions(None) == ""
    assert conversations.clean_instructions("  be brief  ") == "be brief"
    assert conversations.clean_instructions("i" * 12) == "i" * 12
    for bad in ("i" * 13, "a\x00b", "a\udc00", 3, {"x": 1}):
        with pytest.raises(InvalidRequest):
            conversations.clean_instructions(bad)


# --- exports ---------------------------------------------------------------------------------


def test_json_export_is_the_conversation_and_its_shown_messages(alice: Any) -> None:
    """The JSON export holds conversation_json and the history as shown, non-ASCII
    text kept readable (not escaped)."""
    conversation, made = branched(alice)
    Conversation.objects.filter(pk=conversation.pk).update(title="紅葉の旅")
    conversation.refresh_from_db()
    shown, messages = conversations.export_conversation(alice, str(conversation.pk))

    text = conversations.export_json(shown, messages)

    data = json.loads(text)
    assert data["conversation"] == json.loads(
        json.dumps(conversations.conversation_json(conversation))
    )
    assert data["conversation"]["title"] == "紅葉の旅"
    assert [m["id"] for m in data["messages"]] == [
        str(made[name].pk) for name in ("q1", "a1", "q2", "a2b")
    ]
    assert "紅葉の旅" in text


def test_markdown_export_has_instructions_and_a_default_title(alice: Any) -> None:
    """An untitled conversation is "Conversation"; instructions get their own section;
    an answer without a model is headed plainly."""
    conversation = conversation_with(alice, "question", "answer")
    Conversation.objects.filter(pk=conversation.pk).update(instructions="Answer in haiku.")
    conversation.refresh_from_db()
    _, messages = conversations.export_conversation(alice, str(conversation.pk))

    text = conversations.export_markdown(conversation, messages)

    assert text.splitlines()[:4] == [
        "# Conversation",
        "",
        f"- id: `{conversation.pk}`",
        f"- created: {conversation.created_at.isoformat()}",
    ]
    assert "\n## Instructions\n\nAnswer in haiku.\n" in text
    assert text.endswith("\n## User\n\nquestion\n\n## Assistant\n\nanswer\n")

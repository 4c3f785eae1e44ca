"""The version tree: the path on screen, versions per turn, switching (SQLite)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from ai_features.chat import versions
from ai_features.chat.errors import NotFound
from ai_features.chat.start_store import OrmStartStore
from ai_features.models import Conversation, Message

pytestmark = pytest.mark.django_db

User = get_user_model()


def add(conversation: Conversation, parent: Message | None, role: str, text: str) -> Message:
    return Message.objects.create(conversation=conversation, parent=parent, role=role, content=text)


@pytest.fixture
def tree() -> dict:
    """q1 → a1 → q2 → (a2, a2b) and an edit q2' of q2 with its answer a2'."""
    conversation = Conversation.objects.create(owner=User.objects.create_user("u"))
    q1 = add(conversation, None, "user", "q1")
    a1 = add(conversation, q1, "assistant", "a1")
    q2 = add(conversation, a1, "user", "q2")
    a2 = add(conversation, q2, "assistant", "a2")
    a2b = add(conversation, q2, "assistant", "a2b")
    q2e = add(conversation, a1, "user", "q2'")
    a2e = add(conversation, q2e, "assistant", "a2'")
    conversation.current_message = a2b
    conversation.save()
    return locals()


def contents(turns: list[versions.Turn]) -> list[str]:
    return [t.message.content for t in turns]


def test_the_path_to_the_current_leaf_with_versions_per_turn(tree: dict) -> None:
    turns = versions.current_path(tree["conversation"])

    assert contents(turns) == ["q1", "a1", "q2", "a2b"]
    assert [t.versions["count"] for t in turns] == [1, 1, 2, 2]
    assert turns[2].versions == {
        "index": 1,
        "count": 2,
        "ids": [str(tree["q2"].pk), str(tree["q2e"].pk)],
    }
    assert turns[3].versions["index"] == 2


def test_switching_shows_the_newest_answer_below_the_chosen_version(tree: dict) -> None:
    conversation = tree["conversation"]
    before = conversation.updated_at

    leaf = versions.switch_to(conversation, tree["q2e"].pk)

    assert leaf == tree["a2e"]
    conversation.refresh_from_db()
    assert conversation.current_message == tree["a2e"]
    assert conversation.updated_at == before  # not new activity: keeps its list position
    assert contents(versions.current_path(conversation)) == ["q1", "a1", "q2'", "a2'"]
    # Back to q2: its newest answer (a2b), not the first one.
    versions.switch_to(conversation, tree["q2"].pk)
    assert contents(versions.current_path(conversation)) == ["q1", "a1", "q2", "a2b"]


def test_switching_to_a_message_of_another_conversation_is_not_found(tree: dict) -> None:
    other = Conversation.objects.create(owner=tree["conversation"].owner)
    stranger = add(other, None, "user", "elsewhere")

    with pytest.raises(NotFound):
        versions.switch_to(tree["conversation"], stranger.pk)
    with pytest.raises(NotFound):
        versions.switch_to(tree["conversation"], None)


def test_without_a_current_message_the_newest_branch_is_shown(tree: dict) -> None:
    conversation = tree["conversation"]
    conversation.current_message = None
    conversation.save()

    # The newest child at each step: q1, a1, q2' (newer than q2), a2'.
    assert contents(versions.current_path(conversation)) == ["q1", "a1", "q2'", "a2'"]
    assert versions.current_path(Conversation.objects.create(owner=conversation.owner)) == []


def test_a_long_conversation_deletes_whole(tree: dict) -> None:
    """Deleting cascades down the parent chain; hundreds of turns must not recurse deep."""
    conversation = tree["conversation"]
    parent = tree["a2b"]
    for i in range(600):
        parent = add(conversation, parent, "user" if i % 2 else "assistant", f"m{i}")

    conversation.delete()

    assert Message.objects.count() == 0


def test_a_tree_of_rows_has_the_shape_of_the_tree_of_messages(tree: dict) -> None:
    """What a start reads (its store's rows, Tree.of): the same messages, parents, order
    and leaf as Tree.load, as plain rows with the fields the model's context needs."""
    conversation = tree["conversation"]
    messages = versions.Tree.load(conversation)
    rows = versions.Tree.of(OrmStartStore().nodes(conversation.pk))

    assert list(rows.by_id) == list(messages.by_id)
    assert {k: [n.pk for n in v] for k, v in rows.children.items()} == {
        k: [m.pk for m in v] for k, v in messages.children.items()
    }
    path = rows.path_to(rows.leaf(conversation.current_message_id))
    assert [(n.role, n.content) for n in path] == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2b"),
    ]
    assert all(isinstance(n, versions.Node) and n.status == "complete" for n in path)
    assert path[0].parent_id is None and path[1].parent_id == tree["q1"].pk

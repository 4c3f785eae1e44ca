"""The event loop's start store (chat/start_store.py, PgStartStore) takes no lock: what another
start or a rename does between its read and its write is pinned here, on PostgreSQL, by
running it right after the read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest

from ai_features.chat import persistence, pg
from ai_features.chat.errors import ServerBusy
from ai_features.chat.requests import ChatRequest
from ai_features.chat.start_store import PgStartStore
from ai_features.models import Conversation, Message
from tests.support.loop_db import call

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("unit_database"),
    pytest.mark.postgres_only,
]


async def astart(user_id: int, **fields: Any) -> persistence.PreparedChat:
    chat = ChatRequest(**{"message": "Hello?", **fields})
    return await persistence.aprepare_chat(user_id, request=chat, model_for=lambda m: "m")


@contextmanager
def after_the_first_read(meanwhile: Callable[[int], Awaitable[Any]]) -> Iterator[list[Any]]:
    """Run `meanwhile(user_id)` once, right after a start's first read of its conversation;
    yields what was read and returned in order: the first read, what `meanwhile` read, its
    result, the reads after it."""
    read = PgStartStore.aread_conversation
    seen: list[Any] = []

    async def aread(self: PgStartStore, user_id: int, **kwargs: Any) -> Any:
        found = await read(self, user_id, **kwargs)
        seen.append(found)
        if len(seen) == 1:
            seen.append(await meanwhile(user_id))
        return found

    with mock.patch.object(PgStartStore, "aread_conversation", aread):
        yield seen


def test_a_start_whose_leaf_moved_reads_again_and_branches_from_the_new_leaf(alice: Any) -> None:
    first = call(astart, alice.pk)
    with after_the_first_read(lambda user_id: astart(user_id, message="Meanwhile")) as seen:
        later = call(astart, alice.pk, message="Later")
    meanwhile = seen[2]

    # Read, the other start (which read once itself), read again: the first write failed.
    assert len(seen) == 4
    assert str(seen[0].conversation.current_message_id) == first.assistant_message_id
    assert str(seen[3].conversation.current_message_id) == meanwhile.assistant_message_id
    # The later question follows the answer stored meanwhile, not the one it first read.
    assert later.parent_id == meanwhile.assistant_message_id
    assert later.context[-1] == {"role": "user", "content": "Later"}
    conversation = Conversation.objects.get(pk=later.conversation_id)
    assert str(conversation.current_message_id) == later.assistant_message_id
    assert Message.objects.filter(conversation=conversation).count() == 6
    question = Message.objects.get(pk=later.user_message_id)
    assert str(question.parent_id) == meanwhile.assistant_message_id


def test_a_rename_between_the_read_and_the_write_stands(alice: Any) -> None:
    first = call(astart, alice.pk)
    Conversation.objects.filter(pk=first.conversation_id).update(title="")

    async def arename(user_id: int) -> None:
        async def aunit(connection: Any) -> None:
            await connection.execute(
                "UPDATE ai_features_conversation SET title = 'Mine', title_is_custom = true"
                " WHERE id = %s",
                (first.conversation_id,),
            )

        await pg.arun(aunit, pg.current_pool())  # type: ignore[arg-type]

    with after_the_first_read(arename) as seen:
        later = call(astart, alice.pk, message="Later")

    assert len(seen) == 2  # the read and the rename's None: no second read
    conversation = Conversation.objects.get(pk=later.conversation_id)
    assert conversation.title == "Mine"
    assert str(conversation.current_message_id) == later.assistant_message_id


def test_a_leaf_that_keeps_moving_ends_in_server_busy_with_nothing_stored(alice: Any) -> None:
    call(astart, alice.pk)
    stored = Message.objects.count()

    async def amoved(self: PgStartStore, conversation_id: Any, **kwargs: Any) -> bool:
        return False

    with mock.patch.object(PgStartStore, "aadd_turn", amoved), pytest.raises(ServerBusy):
        call(astart, alice.pk, message="Later")
    assert Message.objects.count() == stored


def test_a_conversation_and_its_first_turn_are_made_in_one_statement(alice: Any) -> None:
    prepared = call(astart, alice.pk, new_conversation=True, model="chosen")

    conversation = Conversation.objects.get(pk=prepared.conversation_id)
    assert conversation.owner_id == alice.pk
    assert conversation.title == "Hello?" and conversation.model == "chosen"
    assert str(conversation.current_message_id) == prepared.assistant_message_id
    question, answer = Message.objects.filter(conversation=conversation).order_by("created_at")
    assert (question.role, question.content, question.parent_id) == ("user", "Hello?", None)
    assert (answer.role, answer.status, str(answer.parent_id)) == (
        "assistant",
        "streaming",
        prepared.user_message_id,
    )

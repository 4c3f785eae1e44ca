"""What a stream start reads and writes, behind one small interface with two backends.

The start's logic (persistence._aprepare) is written once, against `StartStore`:

- `PgStartStore`: plain SQL on a psycopg AsyncConnection, on the event loop (pg.py), for
  PostgreSQL in the stream service;
- `OrmStartStore`: Django's ORM, for SQLite and for callers without a pool (the WSGI
  fallback, a management command). Its methods are coroutines that never suspend (each does
  its ORM call and returns), so `drive()` runs the same logic to its end synchronously, on a
  database thread, with no event loop involved (Django's ORM refuses to run on one).

Both send the same statements: the conversation locked (FOR UPDATE; SQLite locks the whole
database at BEGIN IMMEDIATE instead), its messages read as rows, the question and the answer
stored in one INSERT, the conversation's leaf moved.
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import psycopg

from ..models import Conversation, Message
from .versions import Node

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """A conversation as a start needs it (a row, not a model instance)."""

    pk: uuid.UUID
    current_message_id: uuid.UUID | None
    model: str
    title: str
    title_is_custom: bool
    instructions: str


@dataclass(frozen=True, slots=True)
class TargetRow:
    """The message a regeneration or an edit names."""

    pk: uuid.UUID
    parent_id: uuid.UUID | None
    role: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    pk: uuid.UUID
    conversation_id: uuid.UUID
    parent_id: uuid.UUID | None
    role: str
    content: str
    status: str
    model: str
    producer: str
    heartbeat_at: datetime | None
    created_at: datetime  # the ORM sets its own (auto_now_add), the same clock a moment later


_CONVERSATION_FIELDS = (
    "id",
    "current_message_id",
    "model",
    "title",
    "title_is_custom",
    "instructions",
)
_NODE_FIELDS = ("id", "parent_id", "role", "status", "content")


class StartStore(Protocol):
    async def alock_conversation(
        self, user_id: int, *, conversation_id: uuid.UUID | None
    ) -> ConversationRow | None:
        """The user's conversation `conversation_id` (None: their most recently active),
        locked until the transaction ends; None when there is none."""
        ...

    async def acreate_conversation(
        self, user_id: int, *, pk: uuid.UUID, now: datetime
    ) -> ConversationRow: ...

    async def alock_target(
        self, user_id: int, *, message_id: uuid.UUID
    ) -> tuple[TargetRow, ConversationRow] | None:
        """A message of the user's and its conversation, locked; None when there is none."""
        ...

    async def anodes(self, conversation_id: uuid.UUID) -> list[Node]:
        """The conversation's messages, oldest first."""
        ...

    async def ainsert_messages(self, messages: list[NewMessage]) -> None: ...

    async def aupdate_conversation(
        self,
        conversation_id: uuid.UUID,
        *,
        title: str,
        model: str,
        current_message_id: uuid.UUID,
        now: datetime,
    ) -> None: ...


def drive(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run a coroutine that never suspends (the start's logic on OrmStartStore) to its end
    in this thread."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("a start on the ORM store suspended")


class OrmStartStore:
    """The start on Django's ORM, inside the caller's transaction.atomic()."""

    async def alock_conversation(
        self, user_id: int, *, conversation_id: uuid.UUID | None
    ) -> ConversationRow | None:
        rows = Conversation.objects.select_for_update().filter(owner_id=user_id)
        rows = rows.filter(pk=conversation_id) if conversation_id else rows.order_by("-updated_at")
        row = rows.values_list(*_CONVERSATION_FIELDS).first()
        return ConversationRow(*row) if row else None

    async def acreate_conversation(
        self, user_id: int, *, pk: uuid.UUID, now: datetime
    ) -> ConversationRow:
        Conversation.objects.create(pk=pk, owner_id=user_id)
        return ConversationRow(pk, None, "", "", False, "")

    async def alock_target(
        self, user_id: int, *, message_id: uuid.UUID
    ) -> tuple[TargetRow, ConversationRow] | None:
        # One statement: the conversation row locked, with the message's fields.
        found = (
            Conversation.objects.select_for_update(of=("self",))
            .filter(owner_id=user_id, messages__pk=message_id)
            .values_list(*_CONVERSATION_FIELDS, "messages__parent_id", "messages__role")
            .first()
        )
        if found is None:
            return None
        return TargetRow(message_id, *found[6:]), ConversationRow(*found[:6])

    async def anodes(self, conversation_id: uuid.UUID) -> list[Node]:
        rows = Message.objects.filter(conversation_id=conversation_id).order_by("created_at", "pk")
        return [Node(*row) for row in rows.values_list(*_NODE_FIELDS)]

    async def ainsert_messages(self, messages: list[NewMessage]) -> None:
        # created_at: auto_now_add stamps each object in turn, so the answer is the newer.
        Message.objects.bulk_create(
            [
                Message(
                    pk=m.pk,
                    conversation_id=m.conversation_id,
                    parent_id=m.parent_id,
                    role=m.role,
                    content=m.content,
                    status=m.status,
                    model=m.model,
                    producer=m.producer,
                    heartbeat_at=m.heartbeat_at,
                )
                for m in messages
            ]
        )

    async def aupdate_conversation(
        self,
        conversation_id: uuid.UUID,
        *,
        title: str,
        model: str,
        current_message_id: uuid.UUID,
        now: datetime,
    ) -> None:
        Conversation.objects.filter(pk=conversation_id).update(
            title=title, model=model, current_message_id=current_message_id, updated_at=now
        )


_SELECT_CONVERSATION = (
    "SELECT c.id, c.current_message_id, c.model, c.title, c.title_is_custom, c.instructions"
    " FROM ai_features_conversation c"
)
_INSERT_MESSAGE_COLUMNS = (
    "INSERT INTO ai_features_message (id, conversation_id, parent_id, role, content, status,"
    " model, producer, heartbeat_at, created_at, updated_at, finish_reason, error_code) VALUES "
)
_MESSAGE_VALUES = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '', '')"


class PgStartStore:
    """The start in plain SQL on one AsyncConnection, inside its transaction. The table and
    column names are the models' (ai_features/models.py); tests run every start on both
    stores."""

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection

    async def _afetch(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        cursor = await self.connection.execute(sql, params)
        return await cursor.fetchall()

    async def alock_conversation(
        self, user_id: int, *, conversation_id: uuid.UUID | None
    ) -> ConversationRow | None:
        if conversation_id is not None:
            sql = f"{_SELECT_CONVERSATION} WHERE c.owner_id = %s AND c.id = %s FOR UPDATE"
            rows = await self._afetch(sql, (user_id, conversation_id))
        else:
            sql = (
                f"{_SELECT_CONVERSATION} WHERE c.owner_id = %s"
                " ORDER BY c.updated_at DESC LIMIT 1 FOR UPDATE"
            )
            rows = await self._afetch(sql, (user_id,))
        return ConversationRow(*rows[0]) if rows else None

    async def acreate_conversation(
        self, user_id: int, *, pk: uuid.UUID, now: datetime
    ) -> ConversationRow:
        await self.connection.execute(
            "INSERT INTO ai_features_conversation (id, owner_id, title, title_is_custom, model,"
            " instructions, created_at, updated_at) VALUES (%s, %s, '', false, '', '', %s, %s)",
            (pk, user_id, now, now),
        )
        return ConversationRow(pk, None, "", "", False, "")

    async def alock_target(
        self, user_id: int, *, message_id: uuid.UUID
    ) -> tuple[TargetRow, ConversationRow] | None:
        # One statement: the message and its conversation, the conversation row locked.
        sql = (
            "SELECT m.id, m.parent_id, m.role,"
            " c.id, c.current_message_id, c.model, c.title, c.title_is_custom, c.instructions"
            " FROM ai_features_conversation c"
            " JOIN ai_features_message m ON m.conversation_id = c.id"
            " WHERE m.id = %s AND c.owner_id = %s FOR UPDATE OF c"
        )
        rows = await self._afetch(sql, (message_id, user_id))
        if not rows:
            return None
        row = rows[0]
        return TargetRow(*row[:3]), ConversationRow(*row[3:])

    async def anodes(self, conversation_id: uuid.UUID) -> list[Node]:
        rows = await self._afetch(
            "SELECT id, parent_id, role, status, content FROM ai_features_message"
            " WHERE conversation_id = %s ORDER BY created_at, id",
            (conversation_id,),
        )
        return [Node(*row) for row in rows]

    async def ainsert_messages(self, messages: list[NewMessage]) -> None:
        params: list[Any] = []
        for m in messages:
            params += (m.pk, m.conversation_id, m.parent_id, m.role, m.content, m.status,
                       m.model, m.producer, m.heartbeat_at, m.created_at, m.created_at)  # fmt: skip
        sql = _INSERT_MESSAGE_COLUMNS + ", ".join([_MESSAGE_VALUES] * len(messages))
        await self.connection.execute(sql, params)

    async def aupdate_conversation(
        self,
        conversation_id: uuid.UUID,
        *,
        title: str,
        model: str,
        current_message_id: uuid.UUID,
        now: datetime,
    ) -> None:
        await self.connection.execute(
            "UPDATE ai_features_conversation SET title = %s, model = %s,"
            " current_message_id = %s, updated_at = %s WHERE id = %s",
            (title, model, current_message_id, now, conversation_id),
        )

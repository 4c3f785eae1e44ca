"""What a stream start reads and writes, behind one small interface with two backends.

The start's logic (persistence._aprepare) is written once, against `StartStore`:

- `PgStartStore`: plain SQL on a psycopg AsyncConnection, on the event loop (pg.py), for
  PostgreSQL in the stream service;
- `OrmStartStore`: Django's ORM, for SQLite and for callers without a pool (the WSGI
  fallback, a management command). Its methods are coroutines that never suspend (each does
  its ORM call and returns), so `drive()` runs the same logic to its end synchronously, on a
  database thread, with no event loop involved (Django's ORM refuses to run on one).

Both read the conversation with its messages, then store the question and the answer and
move the conversation's leaf to the answer. The event loop's store does it in two
statements and no transaction: the read, then one write that adds the turn only if the leaf
is still the one read (else the start reads again). The ORM's store locks the conversation
(FOR UPDATE; SQLite locks the whole database at BEGIN IMMEDIATE instead) inside the
caller's transaction, so its write always finds the leaf it read.
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import psycopg
from django.db.models import Case, F, Value, When

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


@dataclass(frozen=True, slots=True)
class Found:
    """What a start reads before it writes: the conversation, its messages (oldest first)
    and, for a regeneration or an edit, the message it names."""

    conversation: ConversationRow
    nodes: list[Node]
    target: TargetRow | None = None


class StartStore(Protocol):
    async def aread_conversation(
        self, user_id: int, *, conversation_id: uuid.UUID | None
    ) -> Found | None:
        """The user's conversation `conversation_id` (None: their most recently active)
        with its messages; None when there is none."""
        ...

    async def aread_target(self, user_id: int, *, message_id: uuid.UUID) -> Found | None:
        """A message of the user's, with its conversation and that conversation's
        messages; None when there is none."""
        ...

    async def acreate_conversation(
        self, user_id: int, *, pk: uuid.UUID, title: str, model: str, messages: list[NewMessage]
    ) -> None:
        """A new conversation holding `messages`, the last of them its current leaf."""
        ...

    async def aadd_turn(
        self,
        conversation_id: uuid.UUID,
        *,
        leaf_was: uuid.UUID | None,
        title: str,
        model: str,
        messages: list[NewMessage],
    ) -> bool:
        """Store `messages` and make the last of them the conversation's leaf, only if its
        leaf is still `leaf_was` (what the start read); False, storing nothing, when another
        start (or a deletion) changed it meanwhile. The title is set only where there is
        none yet (a rename meanwhile stands), the model only when one is given."""
        ...


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
    """The start on Django's ORM, inside the caller's transaction.atomic(). The
    conversation is read with SELECT … FOR UPDATE (SQLite locks the whole database at BEGIN
    IMMEDIATE instead), so here the leaf never moves between the read and the write."""

    async def aread_conversation(
        self, user_id: int, *, conversation_id: uuid.UUID | None
    ) -> Found | None:
        rows = Conversation.objects.select_for_update().filter(owner_id=user_id)
        rows = rows.filter(pk=conversation_id) if conversation_id else rows.order_by("-updated_at")
        row = rows.values_list(*_CONVERSATION_FIELDS).first()
        if row is None:
            return None
        return Found(ConversationRow(*row), self.nodes(row[0]))

    async def aread_target(self, user_id: int, *, message_id: uuid.UUID) -> Found | None:
        # One statement: the conversation row locked, with the message's fields.
        found = (
            Conversation.objects.select_for_update(of=("self",))
            .filter(owner_id=user_id, messages__pk=message_id)
            .values_list(*_CONVERSATION_FIELDS, "messages__parent_id", "messages__role")
            .first()
        )
        if found is None:
            return None
        return Found(
            ConversationRow(*found[:6]), self.nodes(found[0]), TargetRow(message_id, *found[6:])
        )

    def nodes(self, conversation_id: uuid.UUID) -> list[Node]:
        """The conversation's messages, oldest first."""
        rows = Message.objects.filter(conversation_id=conversation_id).order_by("created_at", "pk")
        return [Node(*row) for row in rows.values_list(*_NODE_FIELDS)]

    async def acreate_conversation(
        self, user_id: int, *, pk: uuid.UUID, title: str, model: str, messages: list[NewMessage]
    ) -> None:
        # The leaf names a message stored just after: foreign keys are checked at commit
        # (Django makes them DEFERRABLE INITIALLY DEFERRED).
        Conversation.objects.create(
            pk=pk, owner_id=user_id, title=title, model=model, current_message_id=messages[-1].pk
        )
        self._insert(messages)

    async def aadd_turn(
        self,
        conversation_id: uuid.UUID,
        *,
        leaf_was: uuid.UUID | None,
        title: str,
        model: str,
        messages: list[NewMessage],
    ) -> bool:
        changes: dict[str, Any] = {
            "title": Case(When(title="", then=Value(title)), default=F("title")),
            "current_message_id": messages[-1].pk,
            "updated_at": messages[-1].created_at,
        }
        if model:
            changes["model"] = model
        moved = Conversation.objects.filter(pk=conversation_id, current_message_id=leaf_was).update(
            **changes
        )
        if moved != 1:
            return False
        self._insert(messages)
        return True

    def _insert(self, messages: list[NewMessage]) -> None:
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


# The SQL below is put together from the constants here only; every value is a parameter.
# A conversation's messages as five arrays, oldest first: one row however many there are
# (NULL arrays when none), parsed into lists by psycopg.
_NODES_LATERAL = (
    " LEFT JOIN LATERAL (SELECT"
    " array_agg(m.id ORDER BY m.created_at, m.id),"
    " array_agg(m.parent_id ORDER BY m.created_at, m.id),"
    " array_agg(m.role ORDER BY m.created_at, m.id),"
    " array_agg(m.status ORDER BY m.created_at, m.id),"
    " array_agg(m.content ORDER BY m.created_at, m.id)"
    " FROM ai_features_message m WHERE m.conversation_id = c.id) n ON true"
)
_CONVERSATION_COLUMNS = (
    "c.id, c.current_message_id, c.model, c.title, c.title_is_custom, c.instructions"
)
_READ_CONVERSATION = (  # the user's conversation %s, with its messages
    "SELECT c.*, n.* FROM (SELECT " + _CONVERSATION_COLUMNS + " FROM ai_features_conversation c"  # noqa: S608
    " WHERE c.owner_id = %s AND c.id = %s) c" + _NODES_LATERAL
)
_READ_LATEST_CONVERSATION = (  # the user's most recently active one
    "SELECT c.*, n.* FROM (SELECT " + _CONVERSATION_COLUMNS + " FROM ai_features_conversation c"  # noqa: S608
    " WHERE c.owner_id = %s ORDER BY c.updated_at DESC LIMIT 1) c" + _NODES_LATERAL
)
_READ_TARGET = (  # the user's message %s with its conversation and that one's messages
    "SELECT " + _CONVERSATION_COLUMNS + ", n.*, t.id, t.parent_id, t.role"  # noqa: S608
    " FROM ai_features_message t JOIN ai_features_conversation c ON c.id = t.conversation_id"
    + _NODES_LATERAL
    + " WHERE t.id = %s AND c.owner_id = %s"
)
_MESSAGE_COLUMNS = (
    "id, conversation_id, parent_id, role, content, status, model, producer, heartbeat_at,"
    " created_at, updated_at, finish_reason, error_code"
)
_MESSAGE_VALUES = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '', '')"
# Typed, because in INSERT … SELECT PostgreSQL cannot take the types from the columns; and
# only with the conversation row the UPDATE moved.
_MESSAGE_ROW_IF_MOVED = (
    "SELECT %s::uuid, %s::uuid, %s::uuid, %s::varchar, %s::text, %s::varchar, %s::varchar,"
    " %s::varchar, %s::timestamptz, %s::timestamptz, %s::timestamptz, '', ''"
    " WHERE EXISTS (SELECT 1 FROM moved)"
)
# A new conversation and its messages (the leaf names one of them: foreign keys are checked
# at the statement's end, as Django makes them DEFERRABLE INITIALLY DEFERRED).
_CREATE_CONVERSATION = (
    "WITH made AS (INSERT INTO ai_features_conversation (id, owner_id, title, title_is_custom,"  # noqa: S608
    " model, instructions, created_at, updated_at, current_message_id)"
    " VALUES (%s, %s, %s, false, %s, '', %s, %s, %s))"
    " INSERT INTO ai_features_message (" + _MESSAGE_COLUMNS + ") VALUES "
)
# The turn added only if the leaf is still the one read; the title set only where there is
# none, the model only when one is given.
_ADD_TURN = (
    "WITH moved AS (UPDATE ai_features_conversation"  # noqa: S608
    " SET title = CASE WHEN title = '' THEN %s ELSE title END,"
    " model = CASE WHEN %s = '' THEN model ELSE %s END,"
    " current_message_id = %s, updated_at = %s"
    " WHERE id = %s AND current_message_id IS NOT DISTINCT FROM %s RETURNING id)"
    " INSERT INTO ai_features_message (" + _MESSAGE_COLUMNS + ") "
)


def _message_params(messages: list[NewMessage]) -> list[Any]:
    params: list[Any] = []
    for m in messages:
        params += (m.pk, m.conversation_id, m.parent_id, m.role, m.content, m.status,
                   m.model, m.producer, m.heartbeat_at, m.created_at, m.created_at)  # fmt: skip
    return params


def _found(row: tuple[Any, ...], target: TargetRow | None = None) -> Found:
    ids, parents, roles, statuses, contents = row[6:11]
    nodes = (
        [Node(*node) for node in zip(ids, parents, roles, statuses, contents, strict=True)]
        if ids
        else []
    )
    return Found(ConversationRow(*row[:6]), nodes, target)


class PgStartStore:
    """The start in plain SQL on one AsyncConnection in autocommit mode: a read and a
    write, each one statement and atomic on its own, no transaction around them (BEGIN and
    COMMIT would be two statements more, each ~0.1 ms of the loop's CPU and more under
    load: bench/README.md). Nothing is locked: the write adds the turn only if the leaf is
    still the one read, and the start reads again when it is not (persistence._aprepare).
    The table and column names are the models' (ai_features/models.py); tests run every
    start on both stores."""

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection

    async def _afetch_one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        cursor = await self.connection.execute(sql, params)
        return await cursor.fetchone()

    async def aread_conversation(
        self, user_id: int, *, conversation_id: uuid.UUID | None
    ) -> Found | None:
        if conversation_id is None:
            row = await self._afetch_one(_READ_LATEST_CONVERSATION, (user_id,))
        else:
            row = await self._afetch_one(_READ_CONVERSATION, (user_id, conversation_id))
        return _found(row) if row else None

    async def aread_target(self, user_id: int, *, message_id: uuid.UUID) -> Found | None:
        row = await self._afetch_one(_READ_TARGET, (message_id, user_id))
        return _found(row, TargetRow(*row[11:])) if row else None

    async def acreate_conversation(
        self, user_id: int, *, pk: uuid.UUID, title: str, model: str, messages: list[NewMessage]
    ) -> None:
        now, leaf = messages[-1].created_at, messages[-1].pk
        await self.connection.execute(
            _CREATE_CONVERSATION + ", ".join([_MESSAGE_VALUES] * len(messages)),
            [pk, user_id, title, model, now, now, leaf, *_message_params(messages)],
        )

    async def aadd_turn(
        self,
        conversation_id: uuid.UUID,
        *,
        leaf_was: uuid.UUID | None,
        title: str,
        model: str,
        messages: list[NewMessage],
    ) -> bool:
        cursor = await self.connection.execute(
            _ADD_TURN + " UNION ALL ".join([_MESSAGE_ROW_IF_MOVED] * len(messages)),
            [
                title,
                model,
                model,
                messages[-1].pk,
                messages[-1].created_at,
                conversation_id,
                leaf_was,
                *_message_params(messages),
            ],  # fmt: skip
        )
        return cursor.rowcount == len(messages)

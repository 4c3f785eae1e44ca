"""Everything the streaming core stores.

A stream's own statements (aprepare_chat, asave_partial, afinish_message's usual case) run
on the event loop's PostgreSQL connections when the loop has a pool (pg.py); the rest, and
everything without a pool (SQLite, the WSGI fallback), are sync functions behind `db_task`
on the database threads.

Each function is one transaction: the user's message is stored before the model is called,
the assistant message exists from the first event, and its final state always lands.

An answer ends once. Three parties may end one: its producer (afinish_message), the stale
sweep (expire_stale_streaming, from the database heartbeat) and a reader of the shared
Redis log that finds the producer's `live` key gone (ainterrupt_orphan). Each moves the row
out of `streaming` only with `status = 'streaming'` in the UPDATE's WHERE, so the first
ending stands and a later one (a producer that was only slow, not dead) keeps it, adding
nothing but text that would otherwise be lost; whoever made the move counts it in metrics.

Calling convention (as in service.py): a public function takes at most one argument by
position, the one it acts on or for (the user, the message, the conversation), and all
others by keyword, so that two ids or two strings cannot be swapped without notice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .. import metrics
from ..ids import new_uuid
from ..models import Conversation, Message
from . import pg, versions
from .db import db_task
from .errors import InvalidRequest, NotFound, ServerBusy
from .events import StartFields
from .requests import ChatRequest
from .start_store import (
    ConversationRow,
    Found,
    NewMessage,
    OrmStartStore,
    PgStartStore,
    StartStore,
    drive,
)
from .text import neutralise_bidi

# Statuses whose text is worth sending back to the model as context.
_CONTEXT_STATUSES = [
    Message.Status.COMPLETE,
    Message.Status.STOPPED,
    Message.Status.INTERRUPTED,
]
TITLE_LENGTH = 60

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedChat:
    conversation_id: str
    user_message_id: str
    assistant_message_id: str
    context: list[dict[str, str]]
    parent_id: str | None = None  # the user message's parent (None: the first question)
    model: str | None = None  # the model asked for (None: the provider's default)
    answer_model: str = ""  # the model that answers (stored, shown; the demo's own name)
    language: str | None = None
    # The conversation's first answer, with no title typed by the user: worth a title.
    wants_title: bool = False

    def start_fields(self) -> StartFields:
        return {
            "user_message_id": self.user_message_id,
            "parent_id": self.parent_id,
            "model": self.answer_model,
        }


@dataclass(frozen=True)
class MessageSnapshot:
    id: str
    conversation_id: str
    content: str
    status: str
    finish_reason: str
    error_code: str
    usage: dict[str, int] | None
    user_message_id: str | None = None
    parent_id: str | None = None
    model: str = ""

    def start_fields(self) -> StartFields:
        return {
            "user_message_id": self.user_message_id,
            "parent_id": self.parent_id,
            "model": self.model,
        }


def parse_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def title_from(message: str) -> str:
    line = " ".join(neutralise_bidi(message).split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


# --- selectors (also c3-app's JSON API's, through conversations.py) ----------------------


def _conversations_of(owner_id: int, *, lock: bool) -> QuerySet[Conversation]:
    conversations = Conversation.objects.filter(owner_id=owner_id)
    return conversations.select_for_update() if lock else conversations


def owned_conversation(
    owner_id: int, *, conversation_id: str | None, lock: bool = False
) -> Conversation:
    """One of the owner's conversations, else NotFound: malformed and foreign ids answer
    alike (no hint whether the id exists). `lock`: SELECT … FOR UPDATE, in a transaction."""
    parsed = parse_uuid(conversation_id)
    conversation = (
        _conversations_of(owner_id, lock=lock).filter(pk=parsed).first() if parsed else None
    )
    if conversation is None:
        raise NotFound()
    return conversation


def latest_conversation(owner_id: int, *, lock: bool = False) -> Conversation | None:
    """The owner's most recently active conversation, if any."""
    return _conversations_of(owner_id, lock=lock).order_by("-updated_at").first()


def chat_model(conversation: ConversationRow, *, requested: str | None) -> str | None:
    """The model for this turn: the one asked for, else the conversation's while it is
    still offered, else None (the provider's default, OPENAI_MODEL)."""
    if requested:
        return requested
    if conversation.model and conversation.model in settings.OPENAI_MODELS:
        return conversation.model
    return None


def build_context(
    conversation: ConversationRow,
    *,
    earlier: Sequence[versions.Node],
    new_message: str,
    include_history: bool,
) -> list[dict[str, str]]:
    """The system prompt, the user's instructions, the last MAX_CHAT_HISTORY messages on
    screen above the question (`earlier`, root first) that fit CHAT_MAX_CONTEXT_CHARS, and
    the question."""
    context = [{"role": "system", "content": settings.CHAT_SYSTEM_PROMPT}]
    if conversation.instructions:
        context.append({"role": "system", "content": conversation.instructions})
    history: list[dict[str, str]] = []
    if include_history and settings.MAX_CHAT_HISTORY > 0:
        usable = [
            m
            for m in earlier
            if m.content
            and m.role in (Message.Role.USER, Message.Role.ASSISTANT)
            and m.status in _CONTEXT_STATUSES
        ]
        # A model refuses a context over its window, and would then refuse every later
        # turn of the conversation too: keep the newest messages that fit the budget.
        # The system prompt, the instructions and the new message are always sent.
        budget = settings.CHAT_MAX_CONTEXT_CHARS
        used = sum(len(m["content"]) for m in context) + len(new_message)
        for m in reversed(usable[-settings.MAX_CHAT_HISTORY :]):
            used += len(m.content)
            if budget > 0 and used > budget:
                break
            history.append({"role": m.role, "content": m.content})
        history.reverse()
    context.extend(history)
    context.append({"role": "user", "content": new_message})
    return context


async def aprepare_chat(
    user_id: int,
    *,
    request: ChatRequest,
    model_for: Callable[[str | None], str],
    producer: str = "",
) -> PreparedChat:
    """Store the question (unless regenerating) and an empty answer below it, make the
    answer the conversation's current leaf, and build the context from the path above; in
    one transaction, on the event loop's PostgreSQL pool when it has one (pg.py), else on a
    database thread through the ORM (`prepare_chat`).

    `model_for` maps the chosen model to the one that really answers (the provider's).
    `producer` (see liveness.py) is stored on the answer with a first heartbeat, in this
    same transaction rather than in a separate claim: one round trip less per start."""
    pool = pg.current_pool()
    if pool is None:
        return await _aprepare_in_thread(
            user_id, request=request, model_for=model_for, producer=producer
        )

    async def aunit(connection: Any) -> PreparedChat:
        # Autocommit: the read and the write are one statement each (start_store.py).
        return await _aprepare(PgStartStore(connection), user_id, request, model_for, producer)

    return await pg.arun(aunit, pool)


def prepare_chat(
    user_id: int,
    *,
    request: ChatRequest,
    model_for: Callable[[str | None], str],
    producer: str = "",
) -> PreparedChat:
    """aprepare_chat on Django's ORM, in this thread (a database thread: see db_task)."""
    with transaction.atomic():
        return drive(_aprepare(OrmStartStore(), user_id, request, model_for, producer))


_aprepare_in_thread = db_task(prepare_chat)


# A start whose leaf moved between its read and its write (another start of the same user
# in the same conversation, a deletion) reads again; more than this many in a row is
# contention no user makes, answered as a busy server rather than a loop.
START_ATTEMPTS = 5


async def _aprepare(
    store: StartStore,
    user_id: int,
    request: ChatRequest,
    model_for: Callable[[str | None], str],
    producer: str,
) -> PreparedChat:
    """The start itself, on either store: read, then write only if the conversation's leaf
    is still the one read. Two starts of one user in one conversation thus take turns (the
    second reads again and branches from the first's answer), as they did under a lock."""
    for _ in range(START_ATTEMPTS):
        prepared = await _atry_start(store, user_id, request, model_for, producer)
        if prepared is not None:
            return prepared
    logger.warning("a start found its conversation changed %d times in a row", START_ATTEMPTS)
    raise ServerBusy(retry_after=1)


async def _aread(store: StartStore, user_id: int, request: ChatRequest) -> Found | None:
    """What the request names: (for a regeneration or an edit) the message with its
    conversation, or the conversation; None for a new conversation. NotFound when what it
    names is not the user's."""
    if request.regenerate_message_id or request.edit_message_id:
        named = parse_uuid(request.regenerate_message_id or request.edit_message_id)
        found = await store.aread_target(user_id, message_id=named) if named else None
        if found is None or (
            request.conversation_id is not None
            and str(found.conversation.pk) != request.conversation_id
        ):
            raise NotFound()
        return found
    if request.new_conversation:
        return None
    if request.conversation_id is None:
        return await store.aread_conversation(user_id, conversation_id=None)
    parsed = parse_uuid(request.conversation_id)
    found = await store.aread_conversation(user_id, conversation_id=parsed) if parsed else None
    if found is None:
        raise NotFound()
    return found


async def _atry_start(
    store: StartStore,
    user_id: int,
    request: ChatRequest,
    model_for: Callable[[str | None], str],
    producer: str,
) -> PreparedChat | None:
    """One attempt; None when the leaf moved before the write (nothing was stored)."""
    found = await _aread(store, user_id, request)
    if found is None:  # a new conversation, made by the write below
        conversation = ConversationRow(new_uuid(), None, "", "", False, "")
        nodes: list[versions.Node] = []
    else:
        conversation, nodes = found.conversation, found.nodes
    tree: versions.Tree[versions.Node] = versions.Tree.of(nodes)
    had_answer = any(m.role == Message.Role.ASSISTANT for m in tree.by_id.values())
    target = found.target if found is not None else None

    new_messages: list[NewMessage] = []
    if request.regenerate_message_id:
        assert target is not None
        question = tree.by_id.get(target.parent_id)
        if target.role != Message.Role.ASSISTANT or question is None:
            raise InvalidRequest("再生成できるのは回答だけです。")
        earlier = tree.path_to(question)[:-1]
        question_id, question_parent_id = question.pk, question.parent_id
        text = question.content
    else:
        if request.edit_message_id:
            assert target is not None
            if target.role != Message.Role.USER:
                raise InvalidRequest("編集できるのは自分のメッセージだけです。")
            parent = tree.by_id.get(target.parent_id)
        else:
            parent = tree.leaf(conversation.current_message_id)
        earlier = tree.path_to(parent)
        text = request.message
        question_id, question_parent_id = new_uuid(), parent.pk if parent else None
        new_messages.append(
            NewMessage(
                pk=question_id,
                conversation_id=conversation.pk,
                parent_id=question_parent_id,
                role=Message.Role.USER,
                content=text,
                status=Message.Status.COMPLETE,
                model="",
                producer="",
                heartbeat_at=None,
                created_at=timezone.now(),
            )
        )

    chosen = chat_model(conversation, requested=request.model)
    context = build_context(
        conversation,
        earlier=earlier,
        new_message=text,
        include_history=request.include_history,
    )
    now = timezone.now()
    answer = NewMessage(
        pk=new_uuid(),
        conversation_id=conversation.pk,
        parent_id=question_id,
        role=Message.Role.ASSISTANT,
        content="",
        status=Message.Status.STREAMING,
        model=model_for(chosen),
        producer=producer,
        heartbeat_at=now if producer else None,
        created_at=now,
    )
    new_messages.append(answer)
    title = conversation.title or title_from(text)
    model = request.model or ""
    if found is None:
        await store.acreate_conversation(
            user_id, pk=conversation.pk, title=title, model=model, messages=new_messages
        )
    elif not await store.aadd_turn(
        conversation.pk,
        leaf_was=conversation.current_message_id,
        title=title,
        model=model,
        messages=new_messages,
    ):
        return None
    return PreparedChat(
        conversation_id=str(conversation.pk),
        user_message_id=str(question_id),
        assistant_message_id=str(answer.pk),
        context=context,
        parent_id=str(question_parent_id) if question_parent_id else None,
        model=chosen,
        answer_model=answer.model,
        language=request.language,
        wants_title=settings.CHAT_AUTO_TITLE
        and not had_answer
        and not conversation.title_is_custom,
    )


@db_task
def aset_auto_title(conversation_id: str, *, title: str) -> bool:
    """Replace the cut-off first question with a generated title, unless the user has
    renamed the conversation meanwhile (their title wins). Leaves updated_at alone."""
    updated = Conversation.objects.filter(pk=conversation_id, title_is_custom=False).update(
        title=title
    )
    return updated == 1


async def asave_partial(message_id: str, *, content: str) -> bool:
    """Save the text so far; False when the message is no longer `streaming` (stopped from
    another process, see amark_stopped), which tells the generation to end."""
    pool = pg.current_pool()
    if pool is None:
        return await _asave_partial_in_thread(message_id, content=content)

    async def aunit(connection: Any) -> bool:
        cursor = await connection.execute(
            "UPDATE ai_features_message SET content = %s, updated_at = %s"
            " WHERE id = %s AND status = 'streaming'",
            (content, timezone.now(), message_id),
        )
        return cursor.rowcount == 1

    return await pg.arun(aunit, pool)


@db_task
def _asave_partial_in_thread(message_id: str, *, content: str) -> bool:
    updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=content, updated_at=timezone.now()
    )
    return updated == 1


@db_task
def amark_stopped(message_id: str) -> bool:
    """Stop an answer that another process is generating: it notices at its next save."""
    updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        status=Message.Status.STOPPED, finish_reason="stopped", updated_at=timezone.now()
    )
    return updated == 1


async def afinish_message(
    message_id: str,
    *,
    content: str,
    status: str,
    finish_reason: str = "",
    error_code: str = "",
    usage: dict[str, int] | None = None,
) -> MessageSnapshot | None:
    """Store the producer's ending. None when it was stored; the state that stands when
    the message had already been ended elsewhere (the stale sweep or a reader of the Redis
    log took the producer for dead), so that the producer sends the final event the other
    readers got instead of a second, different one."""
    fields = {
        "content": content,
        "status": status,
        "finish_reason": finish_reason,
        "error_code": error_code,
        "prompt_tokens": usage["prompt_tokens"] if usage else None,
        "completion_tokens": usage["completion_tokens"] if usage else None,
    }
    pool = pg.current_pool()
    if pool is not None:
        # The usual case, the first ending, as one statement on the loop; the rest (ended
        # or stopped elsewhere) on a database thread, where _store_ending decides.
        async def aunit(connection: Any) -> bool:
            cursor = await connection.execute(
                _FIRST_ENDING_SQL, _first_ending_params(message_id, fields)
            )
            return cursor.rowcount == 1

        if await pg.arun(aunit, pool):
            return None
    return await _astore_ending(message_id, fields)


# What _store_ending's first UPDATE sends, for the event loop's connection.
_FIRST_ENDING_SQL = (
    "UPDATE ai_features_message SET content = %s, status = %s, finish_reason = %s,"
    " error_code = %s, prompt_tokens = %s, completion_tokens = %s, updated_at = %s"
    " WHERE id = %s AND status = 'streaming'"
)


def _first_ending_params(message_id: str, fields: dict[str, Any]) -> tuple[Any, ...]:
    return (
        fields["content"],
        fields["status"],
        fields["finish_reason"],
        fields["error_code"],
        fields["prompt_tokens"],
        fields["completion_tokens"],
        timezone.now(),
        message_id,
    )


@db_task
def astore_text(message_id: str, *, content: str, status: str, error_code: str = "") -> None:
    """The last resort when afinish_message failed: the text, status and this project's own
    error code, with the model's metadata (finish reason, usage) left empty, so that the
    answer is never lost. An ending stored elsewhere first stands, as in afinish_message."""
    fields = {
        "content": content,
        "status": status,
        "finish_reason": "",
        "error_code": error_code,
        "prompt_tokens": None,
        "completion_tokens": None,
    }
    _store_ending(message_id, fields)


def _store_ending(message_id: str, fields: dict[str, Any]) -> MessageSnapshot | None:
    """Store an ending (afinish_message's fields) and tell whether it stands (see there)."""
    now = timezone.now()
    rows = Message.objects.filter(pk=message_id)
    # The usual case: still streaming, so this ending is the first. One statement, atomic on
    # its own: no transaction around it (BEGIN and COMMIT are two round trips more).
    if rows.filter(status=Message.Status.STREAMING).update(**fields, updated_at=now):
        return None
    with transaction.atomic():
        # No longer streaming (no state leads back to it, so nothing here needs that first
        # UPDATE in the transaction). Stopped from another process (amark_stopped asks; the
        # producer ends it)? An answer that completed meanwhile stays stopped: the stop was
        # already confirmed to the user.
        stopped = dict(fields)
        if stopped["status"] == Message.Status.COMPLETE:
            stopped.update(status=Message.Status.STOPPED, finish_reason="stopped")
        if rows.filter(status=Message.Status.STOPPED).update(**stopped, updated_at=now):
            return None
        # of=self: PostgreSQL refuses FOR UPDATE on the nullable side of the parent join.
        message = rows.select_for_update(of=("self",)).select_related("parent").first()
        if message is None:
            return None  # deleted meanwhile (the conversation or its history)
        # Ended elsewhere first: that state stands; only text it lacks is added.
        if len(fields["content"]) > len(message.content):
            message.content = fields["content"]
            message.save(update_fields=["content", "updated_at"])
        return _snapshot(message)


_astore_ending = db_task(_store_ending)


def _snapshot(message: Message) -> MessageSnapshot:
    """`message` with its parent (the question) loaded (select_related("parent"))."""
    usage = None
    if message.prompt_tokens is not None and message.completion_tokens is not None:
        usage = {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "total_tokens": message.prompt_tokens + message.completion_tokens,
        }
    return MessageSnapshot(
        id=str(message.pk),
        conversation_id=str(message.conversation_id),
        content=message.content,
        status=message.status,
        finish_reason=message.finish_reason,
        error_code=message.error_code,
        usage=usage,
        user_message_id=str(message.parent_id) if message.parent_id else None,
        parent_id=(
            str(message.parent.parent_id) if message.parent and message.parent.parent_id else None
        ),
        model=message.model,
    )


def expire_stale_streaming(conversation_ids: Sequence[uuid.UUID | str] | None = None) -> int:
    """Mark answers whose process is gone as interrupted (kept text and all).

    A live generation's heartbeat is refreshed every few seconds (see liveness.py), so one
    older than STREAM_STALE_AFTER_SECONDS has no process working on it any more.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.STREAM_STALE_AFTER_SECONDS)
    stale = Message.objects.filter(status=Message.Status.STREAMING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, updated_at__lt=cutoff)
    )
    if conversation_ids is not None:
        stale = stale.filter(conversation_id__in=conversation_ids)
    # `stale` keeps status='streaming' in the UPDATE's WHERE: a producer that ends the
    # message at the same moment wins or loses as a whole, never half.
    ended = stale.update(
        status=Message.Status.INTERRUPTED,
        finish_reason="interrupted",
        error_code="server_restarting",
    )
    if ended:
        metrics.STREAMS_TOTAL.labels("interrupted").inc(ended)
    return ended


aexpire_stale_streaming = db_task(expire_stale_streaming)


@db_task
def aget_owned_assistant_message(user_id: int, *, message_id: str) -> MessageSnapshot:
    parsed = parse_uuid(message_id)
    message = (
        Message.objects.select_related("parent")
        .filter(pk=parsed, role=Message.Role.ASSISTANT, conversation__owner_id=user_id)
        .first()
        if parsed
        else None
    )
    if message is None:
        raise NotFound()
    return _snapshot(_expire_if_stale(message))


@db_task
def afind_message_snapshot(message_id: str) -> MessageSnapshot | None:
    """Re-read a message the caller has already checked the owner of (None once deleted)."""
    message = Message.objects.select_related("parent").filter(pk=message_id).first()
    if message is None:
        return None
    return _snapshot(_expire_if_stale(message))


def _expire_if_stale(message: Message) -> Message:
    """A reader of an answer whose process died must see it end, not wait forever."""
    if message.status == Message.Status.STREAMING and expire_stale_streaming(
        [message.conversation_id]
    ):
        message.refresh_from_db()
    return message


@dataclass(frozen=True)
class OrphanEnding:
    snapshot: MessageSnapshot
    ended_here: bool  # this call moved it out of `streaming` (so it counts it, once)


@db_task
def ainterrupt_orphan(message_id: str, *, logged_text: str) -> OrphanEnding | None:
    """End a message whose producer died: `interrupted`, with the text of the shared event
    log (which is ahead of the last partial save). A message that already ended otherwise
    (complete, stopped, error) keeps its state; one the stale sweep marked interrupted gets
    the logged text. None when it no longer exists."""
    now = timezone.now()
    rows = Message.objects.filter(pk=message_id)
    with transaction.atomic():
        # The move out of `streaming` is one conditional UPDATE: of two readers (or a reader
        # and the sweep, or a late producer) only one makes it.
        ended_here = bool(
            rows.filter(status=Message.Status.STREAMING).update(
                status=Message.Status.INTERRUPTED,
                finish_reason="interrupted",
                error_code="interrupted",
                updated_at=now,
            )
        )
        # of=self: PostgreSQL refuses FOR UPDATE on the nullable side of the parent join.
        message = rows.select_for_update(of=("self",)).select_related("parent").first()
        if message is None:
            return None
        if message.status == Message.Status.INTERRUPTED and len(logged_text) >= len(
            message.content
        ):
            message.content = logged_text
            message.error_code = "interrupted"
            message.save(update_fields=["content", "error_code", "updated_at"])
        if ended_here:
            metrics.STREAMS_TOTAL.labels("interrupted").inc()
        return OrphanEnding(_snapshot(message), ended_here)

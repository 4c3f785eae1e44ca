"""Everything the streaming core stores, as sync functions behind `db_task`.

Each function is one transaction: the user's message is stored before the model is called,
the assistant message exists from the first event, and its final state always lands.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import Conversation, Message
from .db import db_task
from .errors import NotFound

# Statuses whose text is worth sending back to the model as context.
_CONTEXT_STATUSES = [
    Message.Status.COMPLETE,
    Message.Status.STOPPED,
    Message.Status.INTERRUPTED,
]
TITLE_LENGTH = 60


@dataclass(frozen=True)
class PreparedChat:
    conversation_id: str
    user_message_id: str
    assistant_message_id: str
    context: list[dict[str, str]]


@dataclass(frozen=True)
class MessageSnapshot:
    id: str
    conversation_id: str
    content: str
    status: str
    finish_reason: str
    error_code: str
    usage: dict[str, int] | None


def parse_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def title_from(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


def _owned_conversation(user_id: int, conversation_id: str | None) -> Conversation:
    if conversation_id is not None:
        parsed = parse_uuid(conversation_id)
        # Malformed and foreign ids answer alike: no hint whether the id exists.
        conversation = (
            Conversation.objects.select_for_update().filter(pk=parsed, owner_id=user_id).first()
            if parsed
            else None
        )
        if conversation is None:
            raise NotFound()
        return conversation
    latest = Conversation.objects.filter(owner_id=user_id).order_by("-updated_at").first()
    return latest or Conversation.objects.create(owner_id=user_id)


def build_context(
    conversation: Conversation, new_message: str, include_history: bool
) -> list[dict[str, str]]:
    context = [{"role": "system", "content": settings.CHAT_SYSTEM_PROMPT}]
    if include_history and settings.MAX_CHAT_HISTORY > 0:
        earlier = (
            conversation.messages.exclude(content="")
            .filter(role__in=[Message.Role.USER, Message.Role.ASSISTANT])
            .filter(status__in=_CONTEXT_STATUSES)
            .order_by("-created_at")
            .values("role", "content")[: settings.MAX_CHAT_HISTORY]
        )
        context.extend(
            {"role": row["role"], "content": row["content"]} for row in reversed(earlier)
        )
    context.append({"role": "user", "content": new_message})
    return context


@db_task
def prepare_chat(
    user_id: int, conversation_id: str | None, message: str, include_history: bool, model: str
) -> PreparedChat:
    with transaction.atomic():
        conversation = _owned_conversation(user_id, conversation_id)
        context = build_context(conversation, message, include_history)
        user_message = Message.objects.create(
            conversation=conversation, role=Message.Role.USER, content=message
        )
        assistant = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            model=model,
        )
        if not conversation.title:
            conversation.title = title_from(message)
        conversation.save(update_fields=["title", "updated_at"])
    return PreparedChat(
        conversation_id=str(conversation.pk),
        user_message_id=str(user_message.pk),
        assistant_message_id=str(assistant.pk),
        context=context,
    )


@db_task
def save_partial(message_id: str, content: str) -> bool:
    """Save the text so far; False when the message is no longer `streaming` (stopped from
    another process, see mark_stopped), which tells the generation to end."""
    updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=content, updated_at=timezone.now()
    )
    return updated == 1


@db_task
def mark_stopped(message_id: str) -> bool:
    """Stop an answer that another process is generating: it notices at its next save."""
    updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        status=Message.Status.STOPPED, finish_reason="stopped", updated_at=timezone.now()
    )
    return updated == 1


@db_task
def finish_message(
    message_id: str,
    *,
    content: str,
    status: str,
    finish_reason: str = "",
    error_code: str = "",
    usage: dict[str, int] | None = None,
) -> None:
    with transaction.atomic():
        if (
            status == Message.Status.COMPLETE
            and Message.objects.filter(pk=message_id, status=Message.Status.STOPPED).exists()
        ):
            # Stopped from another process just before the answer completed here: the stop
            # was already confirmed to the user, so it stands (with the whole text).
            status, finish_reason = Message.Status.STOPPED, "stopped"
        Message.objects.filter(pk=message_id).update(
            content=content,
            status=status,
            finish_reason=finish_reason,
            error_code=error_code,
            prompt_tokens=usage["prompt_tokens"] if usage else None,
            completion_tokens=usage["completion_tokens"] if usage else None,
            updated_at=timezone.now(),
        )


def _snapshot(message: Message) -> MessageSnapshot:
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
    )


def expire_stale_streaming_sync(conversation_ids: list | None = None) -> int:
    """Mark answers whose process is gone as interrupted (kept text and all).

    A live generation touches its message at least every minute, so one untouched for
    STREAM_STALE_AFTER_SECONDS has no process working on it any more.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.STREAM_STALE_AFTER_SECONDS)
    stale = Message.objects.filter(status=Message.Status.STREAMING, updated_at__lt=cutoff)
    if conversation_ids is not None:
        stale = stale.filter(conversation_id__in=conversation_ids)
    return stale.update(
        status=Message.Status.INTERRUPTED,
        finish_reason="interrupted",
        error_code="server_restarting",
    )


expire_stale_streaming = db_task(expire_stale_streaming_sync)


@db_task
def get_owned_assistant_message(user_id: int, message_id: str) -> MessageSnapshot:
    parsed = parse_uuid(message_id)
    message = (
        Message.objects.filter(
            pk=parsed, role=Message.Role.ASSISTANT, conversation__owner_id=user_id
        ).first()
        if parsed
        else None
    )
    if message is None:
        raise NotFound()
    return _snapshot(_expire_if_stale(message))


@db_task
def find_message_snapshot(message_id: str) -> MessageSnapshot | None:
    """Re-read a message the caller has already checked the owner of (None once deleted)."""
    message = Message.objects.filter(pk=message_id).first()
    if message is None:
        return None
    return _snapshot(_expire_if_stale(message))


def _expire_if_stale(message: Message) -> Message:
    """A reader of an answer whose process died must see it end, not wait forever."""
    if message.status == Message.Status.STREAMING and expire_stale_streaming_sync(
        [message.conversation_id]
    ):
        message.refresh_from_db()
    return message


@db_task
def interrupt_orphan(message_id: str, logged_text: str) -> MessageSnapshot | None:
    """End a message whose producer died: `interrupted`, with the text of the shared event
    log (which is ahead of the last partial save). A message that already ended otherwise
    (complete, stopped, error) keeps its state; None when it no longer exists."""
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id).first()
        if message is None:
            return None
        open_statuses = (Message.Status.STREAMING, Message.Status.INTERRUPTED)
        if message.status in open_statuses and len(logged_text) >= len(message.content):
            message.content = logged_text
            message.status = Message.Status.INTERRUPTED
            message.finish_reason = "interrupted"
            message.error_code = "interrupted"
            message.save(
                update_fields=["content", "status", "finish_reason", "error_code", "updated_at"]
            )
        elif message.status == Message.Status.STREAMING:
            message.status = Message.Status.INTERRUPTED
            message.finish_reason = "interrupted"
            message.save(update_fields=["status", "finish_reason", "updated_at"])
        return _snapshot(message)

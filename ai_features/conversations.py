"""Selectors and services for conversations and their history (used by c3-app's JSON API).

Every function takes the user and only ever touches that user's rows: a foreign or
malformed id is simply "not found".
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .chat.errors import InvalidRequest, NotFound
from .chat.persistence import expire_stale_streaming_sync, parse_uuid
from .chat.text import neutralise_bidi, storable
from .models import Conversation, Message

MAX_TITLE_CHARS = 200
DEFAULT_HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 500


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.pk),
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.pk),
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
        "finish_reason": message.finish_reason,
        "error_code": message.error_code,
    }


def list_conversations(user) -> list[Conversation]:
    return list(Conversation.objects.filter(owner=user).order_by("-updated_at")[:200])


def get_conversation(user, conversation_id: str | None) -> Conversation:
    parsed = parse_uuid(conversation_id)
    conversation = Conversation.objects.filter(pk=parsed, owner=user).first() if parsed else None
    if conversation is None:
        raise NotFound()
    return conversation


def latest_conversation(user) -> Conversation | None:
    return Conversation.objects.filter(owner=user).order_by("-updated_at").first()


def clean_title(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRequest("title は文字列です。")
    # JSON can carry lone surrogates and NUL, which no database stores; bidi controls would
    # let the title display as something other than what it is.
    title = " ".join(neutralise_bidi(storable(value)).split())
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidRequest(f"タイトルが長すぎます(最大 {MAX_TITLE_CHARS} 文字)。")
    return title


def create_conversation(user, title: str = "") -> Conversation:
    return Conversation.objects.create(owner=user, title=title)


def rename_conversation(user, conversation_id: str, title: str) -> Conversation:
    conversation = get_conversation(user, conversation_id)
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def delete_conversation(user, conversation_id: str) -> None:
    get_conversation(user, conversation_id).delete()


def history(
    user, conversation_id: str | None, limit: int = DEFAULT_HISTORY_LIMIT
) -> tuple[Conversation | None, list[Message]]:
    """The last `limit` messages of a conversation (default: the most recent), oldest first."""
    conversation = (
        get_conversation(user, conversation_id) if conversation_id else latest_conversation(user)
    )
    if conversation is None:
        return None, []
    # An answer whose process died long ago is shown as interrupted, not "streaming".
    expire_stale_streaming_sync([conversation.pk])
    newest = conversation.messages.order_by("-created_at")[: max(1, min(limit, MAX_HISTORY_LIMIT))]
    return conversation, list(reversed(newest))


def clear_history(user, conversation_id: str | None) -> int:
    """Delete one conversation's messages. A missing, empty or malformed id is an error
    (it once meant "everything"): see delete_all_conversations for that."""
    if not conversation_id:
        raise InvalidRequest("conversation_id は必須です。")
    if parse_uuid(conversation_id) is None:
        raise InvalidRequest("conversation_id の形式が正しくありません。")
    with transaction.atomic():
        conversation = get_conversation(user, conversation_id)
        deleted, _ = conversation.messages.all().delete()
        conversation.title = ""
        conversation.save(update_fields=["title", "updated_at"])
        return deleted


def delete_all_conversations(user) -> int:
    """Every conversation of the user, with their messages; the number of rows deleted."""
    deleted, _ = Conversation.objects.filter(owner=user).delete()
    return deleted

"""Selectors and services for conversations and their history (used by c3-app's JSON API).

Every function takes the user and only ever touches that user's rows: a foreign or
malformed id is simply "not found".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from .chat import versions
from .chat.errors import InvalidRequest
from .chat.persistence import (
    expire_stale_streaming,
    latest_conversation,
    owned_conversation,
    parse_uuid,
)
from .chat.requests import check_text
from .chat.text import neutralise_bidi, storable
from .models import Conversation, Message

MAX_TITLE_CHARS = 200
DEFAULT_HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 500
MAX_LISTED = 200
MAX_QUERY_CHARS = 200


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    data = {
        "id": str(conversation.pk),
        "title": conversation.title,
        "title_is_custom": conversation.title_is_custom,
        # The model the next answer uses ("" stored = the default).
        "model": conversation.model
        if conversation.model in settings.OPENAI_MODELS
        else settings.OPENAI_MODEL,
        "instructions": conversation.instructions,
        "current_message_id": (
            str(conversation.current_message_id) if conversation.current_message_id else None
        ),
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }
    streaming = getattr(conversation, "streaming", None)
    if streaming is not None:  # annotated by list_conversations
        data["streaming"] = streaming
    return data


def usage_json(message: Message) -> dict[str, int] | None:
    if message.prompt_tokens is None or message.completion_tokens is None:
        return None
    return {
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "total_tokens": message.prompt_tokens + message.completion_tokens,
    }


def message_json(message: Message, turn: versions.Turn | None = None) -> dict[str, Any]:
    data = {
        "id": str(message.pk),
        "parent_id": str(message.parent_id) if message.parent_id else None,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
        "model": message.model,
        "finish_reason": message.finish_reason,
        "error_code": message.error_code,
        "usage": usage_json(message),
    }
    if turn is not None:
        data["versions"] = turn.versions
    return data


# --- selectors --------------------------------------------------------------------------


def _search(conversations: QuerySet, user, query: str) -> QuerySet:
    """Conversations whose title or any message matches `query`.

    PostgreSQL: full-text search with the `simple` configuration (no stemming, so it works
    for any language's words, in any order), OR a substring match, because Japanese has no
    spaces between words for a text-search parser to split on. SQLite: the substring match.
    """
    messages = Message.objects.filter(conversation__owner=user)
    matches = Q(title__icontains=query)
    text_match = messages.filter(content__icontains=query)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        words = SearchQuery(query, config="simple", search_type="websearch")
        matches |= Q(
            pk__in=conversations.annotate(search=SearchVector("title", config="simple"))
            .filter(search=words)
            .values("pk")
        )
        full_text = messages.annotate(search=SearchVector("content", config="simple")).filter(
            search=words
        )
        matches |= Q(pk__in=full_text.values("conversation_id"))
    matches |= Q(pk__in=text_match.values("conversation_id"))
    return conversations.filter(matches)


def list_conversations(user, query: str = "") -> Sequence[Conversation]:
    """The user's conversations, newest activity first; with `query`, only those whose
    title or messages match it. Each knows whether an answer is streaming in it."""
    query = " ".join(query.split())
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"検索語が長すぎます(最大 {MAX_QUERY_CHARS} 文字)。")
    conversations = Conversation.objects.filter(owner=user)
    if query:
        conversations = _search(conversations, user, query)
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
    listed = conversations.annotate(streaming=Exists(streaming)).order_by("-updated_at")
    found = list(listed[:MAX_LISTED])
    marked = [c.pk for c in found if c.streaming]
    # An answer whose process died is no longer "streaming" (see expire_stale_streaming).
    if marked and expire_stale_streaming(marked):
        found = list(listed[:MAX_LISTED])
    return found


def get_conversation(user, conversation_id: str | None) -> Conversation:
    return owned_conversation(user.pk, conversation_id=conversation_id)


def history(
    user,
    conversation_id: str | None,
    limit: int = DEFAULT_HISTORY_LIMIT,
    *,
    all_versions: bool = False,
) -> tuple[Conversation | None, list[dict[str, Any]]]:
    """The messages on screen (the path to the current leaf, its last `limit` messages),
    oldest first, each with its `versions`; with `all_versions`, every message of the
    conversation (each with `parent_id`, so the tree can be rebuilt). Default: the
    user's most recent conversation."""
    conversation = (
        get_conversation(user, conversation_id) if conversation_id else latest_conversation(user.pk)
    )
    if conversation is None:
        return None, []
    # An answer whose process died long ago is shown as interrupted, not "streaming".
    expire_stale_streaming([conversation.pk])
    limit = max(1, min(limit, MAX_HISTORY_LIMIT))
    tree = versions.Tree.load(conversation)
    if all_versions:
        shown = tree.all_messages()[-limit:]
    else:
        shown = tree.path_to(tree.leaf(conversation.current_message_id))[-limit:]
    return conversation, [message_json(m, tree.turn(m)) for m in shown]


def export_conversation(user, conversation_id: str) -> tuple[Conversation, list[dict[str, Any]]]:
    """The conversation as shown (every message on the current path)."""
    conversation, messages = history(user, conversation_id, MAX_HISTORY_LIMIT)
    assert conversation is not None
    return conversation, messages


def export_json(conversation: Conversation, messages: list[dict[str, Any]]) -> str:
    return json.dumps(
        {"conversation": conversation_json(conversation), "messages": messages},
        ensure_ascii=False,
        indent=2,
    )


def export_markdown(conversation: Conversation, messages: list[dict[str, Any]]) -> str:
    headings = {"user": "User", "assistant": "Assistant", "system": "System"}
    lines = [f"# {conversation.title or 'Conversation'}", ""]
    lines.append(f"- id: `{conversation.pk}`")
    lines.append(f"- created: {conversation.created_at.isoformat()}")
    if conversation.instructions:
        lines += ["", "## Instructions", "", conversation.instructions]
    for message in messages:
        heading = headings.get(message["role"], message["role"])
        if message["role"] == "assistant" and message["model"]:
            heading += f" ({message['model']})"
        lines += ["", f"## {heading}", "", message["content"]]
    return "\n".join(lines).rstrip() + "\n"


# --- services ---------------------------------------------------------------------------


def clean_title(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRequest("title は文字列です。")
    # JSON can carry lone surrogates and NUL, which no database stores; bidi controls would
    # let the title display as something other than what it is.
    title = " ".join(neutralise_bidi(storable(value)).split())
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidRequest(f"タイトルが長すぎます(最大 {MAX_TITLE_CHARS} 文字)。")
    return title


def clean_model(value: Any) -> str:
    """One of OPENAI_MODELS; "" or null: back to the default."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or value not in settings.OPENAI_MODELS:
        raise InvalidRequest("このモデルは使えません。")
    return value


def clean_instructions(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("instructions は文字列です。")
    check_text(value, limit=settings.CHAT_MAX_INSTRUCTIONS_CHARS, name="指示")
    return value.strip()


def create_conversation(user, title: str = "") -> Conversation:
    return Conversation.objects.create(owner=user, title=title, title_is_custom=bool(title))


def update_conversation(user, conversation_id: str, changes: dict[str, Any]) -> Conversation:
    """PATCH: any of `title` (a rename the automatic title never overrides), `model`,
    `instructions`. All are checked before anything is stored."""
    fields = {"title", "model", "instructions"} & changes.keys()
    if not fields:
        raise InvalidRequest("title・model・instructions のどれかが必要です。")
    cleaned: dict[str, Any] = {}
    if "title" in fields:
        cleaned["title"] = clean_title(changes["title"])
        cleaned["title_is_custom"] = bool(cleaned["title"])
    if "model" in fields:
        cleaned["model"] = clean_model(changes["model"])
    if "instructions" in fields:
        cleaned["instructions"] = clean_instructions(changes["instructions"])
    conversation = get_conversation(user, conversation_id)
    for name, value in cleaned.items():
        setattr(conversation, name, value)
    conversation.save(update_fields=[*cleaned, "updated_at"])
    return conversation


def rename_conversation(user, conversation_id: str, title: str) -> Conversation:
    return update_conversation(user, conversation_id, {"title": title})


def set_current_message(
    user, conversation_id: str, message_id: Any
) -> tuple[Conversation, list[dict[str, Any]]]:
    """Show another version: `message_id` (any message of this conversation) and the
    newest answer below it. Returns the conversation and its new history."""
    if not isinstance(message_id, str):
        raise InvalidRequest("message_id(文字列)は必須です。")
    with transaction.atomic():
        conversation = get_conversation(user, conversation_id)
        versions.switch_to(conversation, parse_uuid(message_id))
    shown, messages = history(user, str(conversation.pk))
    assert shown is not None  # history of a given id raises NotFound rather than None
    return shown, messages


def delete_conversation(user, conversation_id: str) -> None:
    get_conversation(user, conversation_id).delete()


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
        conversation.title_is_custom = False
        conversation.current_message = None
        conversation.save(
            update_fields=["title", "title_is_custom", "current_message", "updated_at"]
        )
        return deleted


def delete_all_conversations(user) -> int:
    """Every conversation of the user, with their messages; the number of rows deleted."""
    deleted, _ = Conversation.objects.filter(owner=user).delete()
    return deleted

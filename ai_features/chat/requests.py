"""Parsing and validating the body of POST /api/ai/chat/stream/ (shared by both servers)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings

from .errors import InvalidRequest

LANGUAGES = ("ja", "en")


@dataclass(frozen=True)
class ChatRequest:
    message: str
    include_history: bool = True
    conversation_id: str | None = None
    # A new answer to the question of this assistant message (a sibling version of it).
    regenerate_message_id: str | None = None
    # A new version of this user message, with `message` as its text, and a new answer.
    edit_message_id: str | None = None
    # One of settings.OPENAI_MODELS; None keeps the conversation's model.
    model: str | None = None
    # Start a new conversation with this message (instead of continuing one).
    new_conversation: bool = False
    # The interface's language (the demo model answers in it); None: the default.
    language: str | None = None


def _optional_str(data: dict, name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{name} は文字列か null です。")
    return value


def is_storable(text: str) -> bool:
    """PostgreSQL text holds neither NUL nor lone surrogates (which JSON can encode)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(text: str, *, limit: int, name: str) -> None:
    """Refuse user text over `limit` characters or that the database cannot store; `name`
    says what it is in the refusal (メッセージ, 指示)."""
    if len(text) > limit:
        raise InvalidRequest(f"{name}が長すぎます(最大 {limit} 文字)。")
    if not is_storable(text):
        raise InvalidRequest(f"{name}に使えない文字が含まれています。")


def parse_chat_request(body: bytes) -> ChatRequest:
    """Turn raw bytes into a ChatRequest or raise InvalidRequest with a clear reason.

    Unknown fields are ignored so that newer clients keep working with older servers.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: nesting a few thousand levels deep fits easily in the body limit.
        raise InvalidRequest("JSON の形式が正しくありません。") from None
    if not isinstance(data, dict):
        raise InvalidRequest("JSON オブジェクトを送ってください。")

    regenerate_message_id = _optional_str(data, "regenerate_message_id")
    edit_message_id = _optional_str(data, "edit_message_id")
    if regenerate_message_id is not None and edit_message_id is not None:
        raise InvalidRequest("regenerate_message_id と edit_message_id は同時に使えません。")

    message = data.get("message")
    if regenerate_message_id is not None:
        message = ""  # ignored: the question is the one already stored
    elif not isinstance(message, str):
        raise InvalidRequest("message(文字列)は必須です。")
    elif not message.strip():
        raise InvalidRequest("メッセージが空です。")
    check_text(message, limit=settings.CHAT_MAX_MESSAGE_CHARS, name="メッセージ")

    include_history = data.get("include_history", True)
    if not isinstance(include_history, bool):
        raise InvalidRequest("include_history は true か false です。")

    conversation_id = _optional_str(data, "conversation_id")

    new_conversation = data.get("new_conversation", False)
    if not isinstance(new_conversation, bool):
        raise InvalidRequest("new_conversation は true か false です。")
    if new_conversation and (conversation_id or regenerate_message_id or edit_message_id):
        raise InvalidRequest(
            "new_conversation は conversation_id・regenerate・edit と同時に使えません。"
        )

    model = _optional_str(data, "model")
    if model is not None and model not in settings.OPENAI_MODELS:
        raise InvalidRequest("このモデルは使えません。")

    language = _optional_str(data, "language")
    if language is not None and language not in LANGUAGES:
        raise InvalidRequest("language は ja か en です。")

    return ChatRequest(
        message=message,
        include_history=include_history,
        conversation_id=conversation_id,
        regenerate_message_id=regenerate_message_id,
        edit_message_id=edit_message_id,
        model=model,
        new_conversation=new_conversation,
        language=language,
    )

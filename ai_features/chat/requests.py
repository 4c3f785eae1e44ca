"""Parsing and validating the body of POST /api/ai/chat/stream/ (shared by both servers)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings

from .errors import InvalidRequest


@dataclass(frozen=True)
class ChatRequest:
    message: str
    include_history: bool = True
    conversation_id: str | None = None


def _storable(text: str) -> bool:
    """PostgreSQL text holds neither NUL nor lone surrogates (which JSON can encode)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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

    message = data.get("message")
    if not isinstance(message, str):
        raise InvalidRequest("message(文字列)は必須です。")
    if not message.strip():
        raise InvalidRequest("メッセージが空です。")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(message) > limit:
        raise InvalidRequest(f"メッセージが長すぎます(最大 {limit} 文字)。")
    if not _storable(message):
        raise InvalidRequest("メッセージに使えない文字が含まれています。")

    include_history = data.get("include_history", True)
    if not isinstance(include_history, bool):
        raise InvalidRequest("include_history は true か false です。")

    conversation_id = data.get("conversation_id")
    if conversation_id is not None and not isinstance(conversation_id, str):
        raise InvalidRequest("conversation_id は文字列か null です。")

    return ChatRequest(
        message=message, include_history=include_history, conversation_id=conversation_id
    )

"""What the streaming core needs from a model: an async stream of text deltas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass(frozen=True, slots=True)
class Delta:
    """One step of an answer: some text, and at the end a finish reason and usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


class ProviderError(Exception):
    """An upstream failure, already turned into a stable code and a message safe to show."""

    MESSAGES = {
        "upstream_timeout": "AI モデルの応答がタイムアウトしました。もう一度お試しください。",
        "upstream_rate_limited": "AI モデルが混み合っています。少し待ってから再試行してください。",
        "upstream_auth": "AI モデルの認証に失敗しました。管理者に連絡してください。",
        "upstream_unavailable": "AI モデルに接続できませんでした。もう一度お試しください。",
        "upstream_disconnected": "AI モデルとの接続が途中で切れました。もう一度お試しください。",
        "upstream_bad_response": "AI モデルから不正な応答がありました。もう一度お試しください。",
        "upstream_error": "AI モデルでエラーが発生しました。もう一度お試しください。",
    }

    def __init__(self, code: str) -> None:
        self.code = code if code in self.MESSAGES else "upstream_error"
        self.message = self.MESSAGES[self.code]
        super().__init__(self.code)


class ChatProvider(Protocol):
    model: str  # the default model

    def model_for(self, requested: str | None) -> str:
        """The model that will really answer a request for `requested` (None: default)."""
        ...

    def astream(
        self,
        messages: list[dict[str, str]],
        *,
        model: str | None = None,
        language: str | None = None,
    ) -> AsyncIterator[Delta]:
        """Yield deltas; raise ProviderError (never anything else) on failure.

        `language` is the interface's ("ja"/"en"), for models that cannot tell it from
        the question (the demo model)."""
        ...

    async def acomplete(
        self, messages: list[dict[str, str]], *, model: str | None = None, max_tokens: int = 32
    ) -> str:
        """A short answer in one piece (used for titles); raises ProviderError."""
        ...

"""The offline demo model: lets the whole app run on a machine with no network or key."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from .base import Delta, Usage

_JA = (
    "これはオフラインのデモモデルです。本物の AI ではありません。\n\n"
    "あなたのメッセージ:「{message}」\n\n"
    "実際のモデルにつなぐには、`.env` に次のどちらかを設定してサーバーを再起動してください。\n\n"
    "- `OPENAI_API_KEY`(と必要なら `OPENAI_MODEL`)\n"
    "- `OPENAI_BASE_URL`(Ollama、vLLM、llama.cpp、LM Studio などの OpenAI 互換サーバー)"
)
_EN_SHORT = (
    "This is the offline demo model, not a real AI. Set `OPENAI_API_KEY` or "
    "`OPENAI_BASE_URL` to connect a real model."
)
_EN = (
    "This is the offline demo model, not a real AI.\n\n"
    "Your message: “{message}”\n\n"
    "To connect a real model, set one of these in `.env` and restart the servers:\n\n"
    "- `OPENAI_API_KEY` (and `OPENAI_MODEL` if needed)\n"
    "- `OPENAI_BASE_URL` (an OpenAI-compatible server: Ollama, vLLM, llama.cpp, LM Studio)"
)
# Without a language (an API client that sent none): both.
DEMO_REPLIES = {"ja": _JA, "en": _EN, None: _JA + "\n\n" + _EN_SHORT}
DEMO_REPLY = DEMO_REPLIES[None]
# Words and the spaces after them, or single CJK characters: close to how models stream.
_TOKEN = re.compile(r"[\u3000-\u9fff\uff00-\uffef]|[^\s\u3000-\u9fff\uff00-\uffef]+\s*|\s+")
TITLE_LENGTH = 30


def _last_user(messages: list[dict[str, str]]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


class DemoProvider:
    model = "offline-demo"

    def __init__(self, pace: float = 0.02) -> None:
        self.pace = pace

    def model_for(self, requested: str | None) -> str:
        return self.model  # whatever was picked, this is what answers

    async def astream(
        self,
        messages: list[dict[str, str]],
        *,
        model: str | None = None,
        language: str | None = None,
    ) -> AsyncIterator[Delta]:
        last_user = _last_user(messages)
        quoted = last_user if len(last_user) <= 200 else last_user[:200] + "…"
        reply = DEMO_REPLIES.get(language, DEMO_REPLY)
        tokens = _TOKEN.findall(reply.format(message=quoted))
        for token in tokens:
            await asyncio.sleep(self.pace)
            yield Delta(text=token)
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4
        yield Delta(finish_reason="stop", usage=Usage(prompt_tokens, len(tokens)))

    async def acomplete(
        self, messages: list[dict[str, str]], *, model: str | None = None, max_tokens: int = 32
    ) -> str:
        """A title request: the demo has no model, so the first words of the question
        (the prompt quotes it last) stand in for one."""
        words = " ".join(_last_user(messages).split())
        return words[:TITLE_LENGTH]

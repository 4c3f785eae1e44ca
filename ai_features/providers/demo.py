"""The offline demo model: lets the whole app run on a machine with no network or key."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from .base import Delta, Usage

DEMO_REPLY = (
    "これはオフラインのデモモデルです。本物の AI ではありません。\n\n"
    "あなたのメッセージ:「{message}」\n\n"
    "実際のモデルにつなぐには、`.env` に次のどちらかを設定してサーバーを再起動してください。\n\n"
    "- `OPENAI_API_KEY`(と必要なら `OPENAI_MODEL`)\n"
    "- `OPENAI_BASE_URL`(Ollama、vLLM、llama.cpp、LM Studio などの OpenAI 互換サーバー)\n\n"
    "This is the offline demo model, not a real AI. Set `OPENAI_API_KEY` or "
    "`OPENAI_BASE_URL` to connect a real model."
)
# Words and the spaces after them, or single CJK characters: close to how models stream.
_TOKEN = re.compile(r"[\u3000-\u9fff\uff00-\uffef]|[^\s\u3000-\u9fff\uff00-\uffef]+\s*|\s+")


class DemoProvider:
    model = "offline-demo"

    def __init__(self, pace: float = 0.02) -> None:
        self.pace = pace

    async def astream(self, messages: list[dict[str, str]]) -> AsyncIterator[Delta]:
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        quoted = last_user if len(last_user) <= 200 else last_user[:200] + "…"
        tokens = _TOKEN.findall(DEMO_REPLY.format(message=quoted))
        for token in tokens:
            await asyncio.sleep(self.pace)
            yield Delta(text=token)
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4
        yield Delta(finish_reason="stop", usage=Usage(prompt_tokens, len(tokens)))

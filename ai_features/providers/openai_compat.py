"""Any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp, LM Studio) via the
official SDK's AsyncOpenAI, with one shared client per process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import openai
from django.conf import settings

from .base import Delta, ProviderError, Usage

logger = logging.getLogger(__name__)


def _error_code(exc: BaseException, *, started: bool) -> str:
    # Order matters: APITimeoutError is an APIConnectionError.
    if isinstance(exc, openai.APITimeoutError):
        return "upstream_timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "upstream_disconnected" if started else "upstream_unavailable"
    if isinstance(exc, openai.RateLimitError):
        return "upstream_rate_limited"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "upstream_auth"
    if isinstance(exc, ValueError):  # a chunk that is not JSON, or not a chunk
        return "upstream_bad_response"
    return "upstream_error"


class OpenAICompatibleProvider:
    def __init__(self, client: openai.AsyncOpenAI, model: str) -> None:
        self.client = client
        self.model = model
        # Some OpenAI-compatible servers reject stream_options; learnt once per process.
        self._usage_supported = True

    @classmethod
    def from_settings(cls) -> OpenAICompatibleProvider:
        client = openai.AsyncOpenAI(
            # Local servers (Ollama, llama.cpp) need no key, but the SDK insists on one.
            api_key=settings.OPENAI_API_KEY or "not-needed",
            base_url=settings.OPENAI_BASE_URL or None,
            # `read` is the longest silence allowed between two bytes from the upstream:
            # it bounds the wait for the first token and every gap after it.
            timeout=openai.Timeout(
                settings.OPENAI_TIMEOUT, connect=settings.OPENAI_CONNECT_TIMEOUT
            ),
            # The SDK retries 408/409/429/5xx and connection errors with backoff; it can
            # only do so before the response starts, i.e. before any token was sent.
            max_retries=settings.OPENAI_MAX_RETRIES,
        )
        return cls(client, settings.OPENAI_MODEL)

    def model_for(self, requested: str | None) -> str:
        return requested or self.model

    async def _create(self, messages: list[dict[str, str]], model: str) -> Any:
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        if self._usage_supported:
            try:
                return await self.client.chat.completions.create(
                    **kwargs, stream_options={"include_usage": True}
                )
            except openai.BadRequestError:
                # Any 400 lands here (a refused prompt too): only a retry that succeeds
                # without stream_options shows that they were the reason.
                stream = await self.client.chat.completions.create(**kwargs)
                logger.info("upstream refused stream_options; streaming without usage")
                self._usage_supported = False
                return stream
        return await self.client.chat.completions.create(**kwargs)

    async def astream(
        self,
        messages: list[dict[str, str]],
        *,
        model: str | None = None,
        language: str | None = None,  # a real model answers in the question's language
    ) -> AsyncIterator[Delta]:
        started = False
        finish_reason: str | None = None
        usage: Usage | None = None
        try:
            stream = await self._create(messages, self.model_for(model))
            # `async with` closes the upstream HTTP response on every way out, including
            # cancellation by the stop button or a shutdown.
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = Usage(
                            chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0
                        )
                    for choice in chunk.choices[:1]:
                        text = choice.delta.content if choice.delta else None
                        if text:
                            started = True
                            yield Delta(text=text)
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
        except ProviderError:
            raise
        except Exception as exc:  # every upstream failure becomes a safe, coded error
            code = _error_code(exc, started=started)
            # The class name is enough to diagnose; the text may hold URLs or keys.
            logger.warning("upstream failed: %s (%s)", code, type(exc).__name__)
            raise ProviderError(code) from None
        if finish_reason is None:
            # The body ended without a finish chunk: the connection was cut.
            logger.warning("upstream stream ended without a finish reason")
            raise ProviderError("upstream_disconnected")
        yield Delta(finish_reason=finish_reason, usage=usage)

    async def acomplete(
        self, messages: list[dict[str, str]], *, model: str | None = None, max_tokens: int = 32
    ) -> str:
        try:
            completion = await self.client.chat.completions.create(
                model=self.model_for(model), messages=messages, max_tokens=max_tokens
            )
        except Exception as exc:
            code = _error_code(exc, started=False)
            logger.warning("upstream failed: %s (%s)", code, type(exc).__name__)
            raise ProviderError(code) from None
        choice = completion.choices[0] if completion.choices else None
        return (choice.message.content or "") if choice and choice.message else ""

"""Any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp, LM Studio) via the
official SDK's AsyncOpenAI, with one shared client per process.

The SDK makes the request (auth, retries, timeouts, status errors) and hands over its raw
streaming response; the chunks are read as lines and parsed with orjson. Letting the SDK
build a pydantic object per chunk was most of the stream service's CPU (bench/README.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import Any

import aiohttp
import httpx2
import openai
import orjson
from django.conf import settings

from ..ids import new_hex
from .base import Delta, ProviderError, Usage

logger = logging.getLogger(__name__)


# The HTTP client the SDK reads the body with (httpx2, under its aiohttp transport). The
# SDK's own stream would wrap its errors in APITimeoutError and APIConnectionError; reading
# the raw body, that mapping is ours.
_BODY_TIMEOUTS: tuple[type[Exception], ...] = (httpx2.TimeoutException,)
_BODY_ERRORS: tuple[type[Exception], ...] = (httpx2.RequestError,)


class _UpstreamErrorEvent(Exception):
    """The upstream sent an `error` object in the stream instead of a chunk."""


def _aiohttp_origin(exc: BaseException) -> aiohttp.ClientError | None:
    """The aiohttp error under the SDK's and the transport's wrappers (`raise ... from`)."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is two or three links; the bound only guards a cycle
        if seen is None:
            break
        if isinstance(seen, aiohttp.ClientError):
            return seen
        seen = seen.__cause__
    return None


def _error_code(exc: BaseException, *, started: bool) -> str:
    origin = _aiohttp_origin(exc)
    if origin is not None:
        # The SDK's aiohttp transport maps every aiohttp ClientConnectionError (a refused
        # connection, a server that hung up) to httpx2's ConnectTimeout, so the SDK would
        # call each of them a timeout: what aiohttp raised says which it was. Its timeouts
        # (sock_read, sock_connect, the pool wait) are TimeoutErrors.
        if isinstance(origin, TimeoutError):
            return "upstream_timeout"
        return "upstream_disconnected" if started else "upstream_unavailable"
    # Order matters: APITimeoutError is an APIConnectionError.
    if isinstance(exc, (openai.APITimeoutError, *_BODY_TIMEOUTS)):
        return "upstream_timeout"
    if isinstance(exc, (openai.APIConnectionError, *_BODY_ERRORS)):
        return "upstream_disconnected" if started else "upstream_unavailable"
    if isinstance(exc, openai.RateLimitError):
        return "upstream_rate_limited"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "upstream_auth"
    # A chunk that is not JSON (orjson's error is a ValueError), or not shaped like a chunk.
    if isinstance(exc, ValueError | KeyError | TypeError | AttributeError):
        return "upstream_bad_response"
    return "upstream_error"


def _parse_chunk(payload: bytes) -> dict[str, Any]:
    """One chunk's JSON. orjson is the fast path; it refuses lone surrogate escapes
    (`"\\ud83d"`), which models do send (an emoji split across two chunks), so those few
    chunks go through the standard parser and on to the text normaliser (chat/text.py).
    Bytes that are not UTF-8 become U+FFFD there, as a text decoder of the body made them."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload.decode("utf-8", "replace"))


def _body_reads(response: httpx2.Response) -> AsyncIterable[bytes]:
    """The body's bytes as they arrive. Without a content encoding that is the response's
    own stream (httpx's `Response.stream`, the transport's reads as they come):
    `aiter_bytes` would pass every read through two more generators, a decoder and a
    chunker that leave it as it is, on every token. An encoded body (gzip, say) is decoded
    by httpx as before."""
    if response.headers.get("content-encoding", "identity").strip().lower() == "identity":
        return response.stream  # type: ignore[return-value]  # an AsyncByteStream here
    return response.aiter_bytes()


class _Lines:
    r"""Splits the body's reads into lines, as bytes without their ends (`\n`, `\r\n` or
    `\r`), here rather than by the SDK's `iter_lines` (httpx2's text decoder, then its
    line decoder, per read): a chunk's JSON goes to orjson as the bytes it came in. A
    blank line may appear where a `\r\n` is cut between two reads; blank lines only
    separate events, and the reader skips them."""

    def __init__(self) -> None:
        self._pending = b""  # the part of the body after its last line end so far

    def feed(self, data: bytes) -> list[bytes]:
        if self._pending:
            data = self._pending + data
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        self._pending = lines.pop()  # b"" after a whole line
        return lines

    def rest(self) -> list[bytes]:
        """The last line, when the body ended without a line end."""
        rest, self._pending = self._pending, b""
        return [rest] if rest else []


class _Chunks:
    """What the body's lines say: the answer's text pieces, then its finish reason and
    usage; `done` once the upstream sent `[DONE]`."""

    def __init__(self) -> None:
        self.started = False
        self.done = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.failure: Exception | None = None

    def texts(self, lines: list[bytes]) -> list[str]:
        """The text pieces of these lines. A line that fails (a chunk that is not JSON, an
        `error` event) ends them: the pieces before it are returned, and `failure` holds
        what to raise once they are relayed."""
        texts: list[str] = []
        try:
            self._take(lines, texts)
        except Exception as exc:
            self.failure = exc
        return texts

    def _take(self, lines: list[bytes], texts: list[str]) -> None:
        for line in lines:
            # Server-Sent Events: only `data:` lines carry chunks (the rest are blank
            # separators, comments, event names).
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                break
            chunk = _parse_chunk(payload)
            if "error" in chunk:
                raise _UpstreamErrorEvent()
            chunk_usage = chunk.get("usage")
            if chunk_usage:
                self.usage = Usage(
                    chunk_usage.get("prompt_tokens") or 0,
                    chunk_usage.get("completion_tokens") or 0,
                )
            for choice in (chunk.get("choices") or [])[:1]:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    self.started = True
                    texts.append(text)
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]


def build_client(
    *, api_key: str, base_url: str | None, timeout: openai.Timeout | float, max_retries: int
) -> openai.AsyncOpenAI:
    """The SDK's client on its aiohttp transport (`openai[aiohttp]`, the SDK's own option
    "for improved concurrency"): aiohttp parses HTTP in C and hands out pooled connections
    without probing each idle one per request, which httpx2/httpcore2 did in pure Python
    (bench/README.md). The SDK still builds the request, authenticates, retries, applies the
    timeouts (`read` becomes aiohttp's `sock_read`: silence between two reads) and raises
    its status errors; the vendored transport maps aiohttp's errors to httpx2's.

    DefaultAioHttpClient keeps the SDK's connection limits (1000 connections, as its httpx2
    client had); `max_connections=None` would fall back to aiohttp's own cap of 100, which
    would queue every stream beyond the hundredth."""
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
        http_client=openai.DefaultAioHttpClient(timeout=timeout),
    )


class OpenAICompatibleProvider:
    def __init__(self, client: openai.AsyncOpenAI, model: str) -> None:
        self.client = client
        self.model = model
        # Some OpenAI-compatible servers reject stream_options; learnt once per process.
        self._usage_supported = True

    @classmethod
    def from_settings(cls) -> OpenAICompatibleProvider:
        client = build_client(
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

    async def _create(
        self, messages: list[dict[str, str]], model: str, *, usage: bool
    ) -> httpx2.Response:
        """POST /chat/completions through the SDK's generic `post` (its documented way to
        send a body as is): the SDK's retries, auth, timeouts and status errors, and its
        HTTP response unread (`stream=True`). Not `chat.completions.create`: that walks
        every message through the SDK's TypedDict transform first, half of the SDK's CPU
        per request (bench/README.md), for dicts that are already plain JSON."""
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        if usage:
            body["stream_options"] = {"include_usage": True}
        return await self.client.post(
            "/chat/completions",
            cast_to=httpx2.Response,
            body=body,
            stream=True,
            # The SDK would make one with uuid4 (see ai_features/ids.py); OpenAI's client
            # sends none, but it is made for every request all the same.
            options={"idempotency_key": new_hex()},
        )

    async def _open(
        self, stack: contextlib.AsyncExitStack, messages: list[dict[str, str]], model: str
    ) -> httpx2.Response:
        """The request happens here, with the SDK's retries; `stack` closes the response."""
        if self._usage_supported:
            try:
                response = await self._create(messages, model, usage=True)
            except openai.BadRequestError:
                # Any 400 lands here (a refused prompt too): only a retry that succeeds
                # without stream_options shows that they were the reason.
                response = await self._create(messages, model, usage=False)
                logger.info("upstream refused stream_options; streaming without usage")
                self._usage_supported = False
        else:
            response = await self._create(messages, model, usage=False)
        stack.push_async_callback(response.aclose)
        return response

    async def astream(
        self,
        messages: list[dict[str, str]],
        *,
        model: str | None = None,
        language: str | None = None,  # a real model answers in the question's language
    ) -> AsyncIterator[Delta]:
        chunks = _Chunks()
        try:
            # Leaving the stack closes the upstream HTTP response on every way out,
            # including cancellation by the stop button or a shutdown.
            async with contextlib.AsyncExitStack() as stack:
                response = await self._open(stack, messages, self.model_for(model))
                reads = aiter(_body_reads(response))
                if isinstance(reads, AsyncGenerator):  # closed now, not when collected
                    stack.push_async_callback(reads.aclose)
                lines = _Lines()
                async for data in reads:
                    for text in chunks.texts(lines.feed(data)):
                        yield Delta(text=text)
                    if chunks.failure is not None:
                        raise chunks.failure
                    if chunks.done:
                        break
                else:
                    for text in chunks.texts(lines.rest()):
                        yield Delta(text=text)
                    if chunks.failure is not None:
                        raise chunks.failure
        except ProviderError:
            raise
        except Exception as exc:  # every upstream failure becomes a safe, coded error
            code = _error_code(exc, started=chunks.started)
            # The class name is enough to diagnose; the text may hold URLs or keys.
            logger.warning("upstream failed: %s (%s)", code, type(exc).__name__)
            raise ProviderError(code) from None
        if chunks.finish_reason is None:
            # The body ended without a finish chunk: the connection was cut.
            logger.warning("upstream stream ended without a finish reason")
            raise ProviderError("upstream_disconnected")
        yield Delta(finish_reason=chunks.finish_reason, usage=chunks.usage)

    async def acomplete(
        self, messages: list[dict[str, str]], *, model: str | None = None, max_tokens: int = 32
    ) -> str:
        try:
            # The SDK types messages as TypedDicts; ours are the same role/content dicts.
            completion = await self.client.chat.completions.create(
                model=self.model_for(model),
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
            )
        except Exception as exc:
            code = _error_code(exc, started=False)
            logger.warning("upstream failed: %s (%s)", code, type(exc).__name__)
            raise ProviderError(code) from None
        choice = completion.choices[0] if completion.choices else None
        return (choice.message.content or "") if choice and choice.message else ""

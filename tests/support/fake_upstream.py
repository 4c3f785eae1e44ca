"""A fake OpenAI-compatible Chat Completions server for tests and benchmarks.

Run it:      python -m tests.support.fake_upstream --host 127.0.0.1 --port 9100 [--tokens 20 ...]
In pytest:   with FakeUpstream() as up: openai.AsyncOpenAI(base_url=up.base_url, ...)

Behaviour is chosen per request by a directive in the LAST user message, e.g.
``"hello [[fake tokens=5 pace=0.01 drop_after=3]]"``. The directive never appears in
the reply (echo=1 dumps the messages verbatim, directive included). Keys:

    tokens=N            content chunks of the default reply (default 12)
    pace=S              seconds between content chunks (default 0)
    first_delay=S       seconds before the first chunk; headers go out at once
    headers_delay=S     seconds before the response headers are sent at all
    drop_after=N        cut the TCP connection after N content chunks
    hang_after=N        after N content chunks send nothing more, keep the socket open
    hang=1              same as hang_after=0 (headers only)
    malformed_after=N   after N content chunks send ``data: {not json`` then carry on
    status=CODE         answer CODE (400-599) with an OpenAI-style error body
    status_times=K      ...only for the first K requests of this scenario (see id)
    id=NAME             names the scenario that status_times counts
    retry_after=S       Retry-After for 429/5xx (default 0, see _error_response)
    reply=NAME          canned text instead of tok0..: markdown | xss | plain_code | japanese
    echo=1              reply with the JSON of the received messages (role+content)
    reject_stream_options=1  400 if the request has stream_options (old servers)
    chunks=NAME         send the RAW_CHUNKS list NAME as the content deltas, exactly
                        (JSON-escaped, so lone surrogates and NUL arrive as the SDK parses them)
    finish_reason=TEXT  the finish chunk's finish_reason instead of "stop"
    prompt_tokens=N     usage.prompt_tokens instead of the word count (may be negative)
    completion_tokens=N usage.completion_tokens instead of the chunk count (may be negative)

Unknown keys or bad values get a 400, so typos fail loudly. The role chunk is sent
with the first content chunk, so "after N chunks" means nothing else at all; N larger
than the reply acts just before the finish chunk. Without "stream": true the whole
generation time passes before the headers, hang_after hangs before them, drop_after
sends half of a Content-Length body and malformed_after sends a body of ``{not json``.

The default reply is chunks "tok0 ", "tok1 ", ... so the full text is
``"".join(f"tok{i} " for i in range(N))``; use ``expected_text()`` rather than
hard-coding it. ``reply``/``echo`` text is cut into 8-character chunks.

Other routes: GET /v1/models, GET /_stats, GET /_requests (bodies since the last
reset), POST /_reset.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

DEFAULT_TOKENS = 12
DEFAULT_MODEL = "fake"
CHUNK_CHARS = 8  # size of each chunk for reply=/echo= text
REPO_ROOT = Path(__file__).resolve().parents[2]

CANNED_REPLIES: dict[str, str] = {
    "markdown": (
        "Here is a **short** paragraph with `inline code` and *emphasis*.\n"
        "\n"
        "- first item\n"
        "- second item\n"
        "- third item\n"
        "\n"
        "| Name | Value |\n"
        "| ---- | ----- |\n"
        "| alpha | 1 |\n"
        "| beta | 2 |\n"
        "\n"
        "See [the docs](https://example.com/docs) for more.\n"
        "\n"
        "```python\n"
        "def greet(name: str) -> str:\n"
        '    return f"Hello, {name}!"\n'
        "```\n"
    ),
    "xss": (
        "Harmless intro text.\n"
        "\n"
        "<script>window.__xss=1</script>\n"
        "\n"
        '<img src=x onerror="window.__xss=1">\n'
        "\n"
        "[click](javascript:window.__xss=1)\n"
        "\n"
        "A [normal link](https://example.com/safe) at the end.\n"
    ),
    # A code block without a language holding text that highlight.js would guess a
    # language for with low relevance (vbnet, sql): it must stay plain on the page.
    "plain_code": (
        "Output:\n"
        "\n"
        "```\n"
        "Step 1: open the settings page.\n"
        "Step 2: choose a model and save it.\n"
        "total 12\n"
        "drwxr-xr-x 2 user user 4096 Jan  1 10:00 docs\n"
        "```\n"
    ),
    "japanese": (
        "こんにちは、世界。今日はとても良い天気ですね。日本語のストリーミング表示を確認しています。"
    ),
}

# Deltas that no well-behaved model sends but JSON can carry: a surrogate pair split across
# two chunks, a lone surrogate, NUL. Sent verbatim, one list item per chunk.
RAW_CHUNKS: dict[str, list[str]] = {
    "split_surrogate": ["smile \ud83d", "\ude00 joined"],
    "odd_text": ["a\ud83d", "\ude00 nul\x00 lone\udc00 ", "end \ud83d"],
}

_DIRECTIVE_RE = re.compile(r"\[\[fake\b([^\]]*)\]\]")
_INT_KEYS = {
    "tokens",
    "drop_after",
    "hang_after",
    "malformed_after",
    "status",
    "status_times",
}
_FLOAT_KEYS = {"pace", "first_delay", "headers_delay", "retry_after"}
_BOOL_KEYS = {"hang", "echo", "reject_stream_options"}
_SIGNED_INT_KEYS = {"prompt_tokens", "completion_tokens"}
_STR_KEYS = {"reply", "id", "chunks", "finish_reason"}
KNOWN_KEYS = frozenset(_INT_KEYS | _SIGNED_INT_KEYS | _FLOAT_KEYS | _BOOL_KEYS | _STR_KEYS)


class DirectiveError(ValueError):
    """A malformed [[fake ...]] directive; the server answers 400 with this message."""


class _DropConnection(Exception):
    """Raised after the response started so uvicorn closes the socket mid-body."""


class _HideDeliberateDrops(logging.Filter):
    # uvicorn logs every exception from the app; ours is intentional, keep logs clean.
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DropConnection)


_uvicorn_error_logger = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _HideDeliberateDrops) for f in _uvicorn_error_logger.filters):
    # Filters survive uvicorn's dictConfig, so installing at import time is enough.
    _uvicorn_error_logger.addFilter(_HideDeliberateDrops())


# --------------------------------------------------------------------------- directives


@dataclass(frozen=True)
class Directive:
    tokens: int = DEFAULT_TOKENS
    pace: float = 0.0
    first_delay: float = 0.0
    headers_delay: float = 0.0
    drop_after: int | None = None
    hang_after: int | None = None
    malformed_after: int | None = None
    status: int | None = None
    status_times: int | None = None
    retry_after: float = 0.0
    id: str | None = None
    reply: str | None = None
    echo: bool = False
    reject_stream_options: bool = False
    chunks: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def directive(**values: object) -> str:
    """Build a directive string: directive(tokens=3, pace=0.01) -> '[[fake tokens=3 pace=0.01]]'."""
    unknown = set(values) - KNOWN_KEYS
    if unknown:
        raise DirectiveError(f"unknown fake directive key(s): {sorted(unknown)}")
    parts = [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in values.items()]
    return "[[fake " + " ".join(parts) + "]]"


def parse_directive_pairs(text: str) -> dict[str, str]:
    """Raw key=value pairs from every [[fake ...]] in text (later ones win)."""
    pairs: dict[str, str] = {}
    for match in _DIRECTIVE_RE.finditer(text):
        for token in match.group(1).split():
            key, sep, value = token.partition("=")
            if not sep or not key:
                raise DirectiveError(f"fake directive token {token!r} is not key=value")
            pairs[key] = value
    return pairs


def strip_directives(text: str) -> str:
    return _DIRECTIVE_RE.sub("", text).strip()


def build_directive(
    pairs: Mapping[str, str], defaults: Mapping[str, str] | None = None
) -> Directive:
    """Validate and type the pairs; unknown keys are an error so typos fail loudly."""
    merged = {**(defaults or {}), **pairs}
    kwargs: dict[str, Any] = {}
    for key, raw in merged.items():
        if key not in KNOWN_KEYS:
            raise DirectiveError(f"unknown fake directive key {key!r}; known: {sorted(KNOWN_KEYS)}")
        try:
            if key in _INT_KEYS:
                value: Any = int(raw)
                if value < 0:
                    raise ValueError
            elif key in _SIGNED_INT_KEYS:
                value = int(raw)
            elif key in _FLOAT_KEYS:
                value = float(raw)
                if not math.isfinite(value) or value < 0:
                    raise ValueError
            elif key in _BOOL_KEYS:
                lowered = raw.lower()
                if lowered not in {"1", "0", "true", "false", "yes", "no"}:
                    raise ValueError
                value = lowered in {"1", "true", "yes"}
            else:
                value = raw
        except ValueError:
            raise DirectiveError(f"bad value for fake directive {key}={raw!r}") from None
        kwargs[key] = value
    if kwargs.pop("hang", False) and "hang_after" not in kwargs:
        kwargs["hang_after"] = 0
    reply = kwargs.get("reply")
    if reply is not None and reply not in CANNED_REPLIES:
        raise DirectiveError(f"unknown reply={reply!r}; known: {sorted(CANNED_REPLIES)}")
    chunks = kwargs.get("chunks")
    if chunks is not None and chunks not in RAW_CHUNKS:
        raise DirectiveError(f"unknown chunks={chunks!r}; known: {sorted(RAW_CHUNKS)}")
    status = kwargs.get("status")
    if status is not None and not 400 <= status <= 599:
        raise DirectiveError(f"status={status} must be an HTTP error code (400-599)")
    return Directive(**kwargs)


def _content_text(content: object) -> str:
    # Content may be a string or a list of parts ({"type": "text", "text": ...}).
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _split(text: str) -> list[str]:
    return [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]


def reply_chunks(d: Directive, messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The content deltas a request produces (before any drop/hang cuts it short)."""
    if d.echo:
        # Verbatim (directive included) so tests compare with exactly what was sent.
        dump = [{"role": m.get("role"), "content": m.get("content")} for m in messages]
        return _split(json.dumps(dump, ensure_ascii=False))
    if d.reply is not None:
        return _split(CANNED_REPLIES[d.reply])
    if d.chunks is not None:
        return list(RAW_CHUNKS[d.chunks])
    return [f"tok{i} " for i in range(d.tokens)]


def expected_chunks(
    directive_or_message: str,
    *,
    messages: Sequence[Mapping[str, Any]] | None = None,
    defaults: Mapping[str, str] | None = None,
) -> list[str]:
    """The content chunks the fake sends for a last user message (or bare directive).

    echo=1 needs `messages`: the full list the app will send upstream.
    `defaults` are the server's CLI defaults (FakeUpstream.expected_text passes them).
    """
    d = build_directive(parse_directive_pairs(directive_or_message), defaults)
    if d.echo and messages is None:
        raise ValueError("echo=1 replies with the messages sent; pass messages=[...]")
    return reply_chunks(d, messages or [])


def expected_text(
    directive_or_message: str,
    *,
    messages: Sequence[Mapping[str, Any]] | None = None,
    defaults: Mapping[str, str] | None = None,
) -> str:
    """The full reply text for a message on a successful, uncut request."""
    return "".join(expected_chunks(directive_or_message, messages=messages, defaults=defaults))


# --------------------------------------------------------------------------- server state


@dataclass
class Stats:
    requests: int = 0  # chat completion requests received (any outcome)
    active_streams: int = 0  # chat responses in flight (stream or not)
    completed: int = 0  # responses sent to the end
    client_disconnects: int = 0  # client closed before the response ended
    errors: int = 0  # injected status= errors, auth and validation failures
    dropped: int = 0  # connections cut on purpose by drop_after
    last_request: dict[str, Any] | None = None
    last_headers: dict[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "active_streams": self.active_streams,
            "completed": self.completed,
            "client_disconnects": self.client_disconnects,
            "errors": self.errors,
            "dropped": self.dropped,
            "last_request": self.last_request,
            "last_headers": self.last_headers,
        }


@dataclass
class ServerState:
    defaults: dict[str, str] = field(default_factory=dict)
    model: str = DEFAULT_MODEL
    require_key: str | None = None
    stats: Stats = field(default_factory=Stats)
    bodies: list[dict[str, Any]] = field(default_factory=list)  # since last reset, capped
    failures: dict[str, int] = field(default_factory=dict)  # status_times per scenario
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def reset(self) -> None:
        self.stats = Stats(active_streams=self.stats.active_streams)  # in-flight stay real
        self.bodies.clear()
        self.failures.clear()


_MAX_BODIES = 200

_ERROR_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "permission_error",
        "permission_denied",
        "You are not allowed to use this model.",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("server_error", "timeout", "Request timed out."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM). Please try again in 0s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: (
        "server_error",
        "overloaded",
        "The engine is currently overloaded, please try again later.",
    ),
}


def _error_response(
    status: int,
    *,
    message: str | None = None,
    retry_after: float = 0.0,
    request_id: str,
) -> JSONResponse:
    err_type, code, default_message = _ERROR_KINDS.get(
        status,
        ("server_error" if status >= 500 else "invalid_request_error", None, "Error."),
    )
    body = {
        "error": {
            "message": f"{message or default_message} (fake upstream status={status})",
            "type": err_type,
            "param": None,
            "code": code,
        }
    }
    headers = {"x-request-id": request_id}
    if status == 429 or status >= 500:
        headers["retry-after"] = str(math.ceil(retry_after))
        # The SDK ignores a zero Retry-After and backs off ~0.5-1 s; 1 ms keeps retries fast.
        headers["retry-after-ms"] = str(max(1, round(retry_after * 1000)))
    return JSONResponse(body, status_code=status, headers=headers)


# --------------------------------------------------------------------------- responses


def _dumps(payload: object) -> str:
    # Compact JSON and raw UTF-8, like OpenAI (multi-byte text may span TCP reads).
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _json_bytes(payload: object) -> bytes:
    try:
        return _dumps(payload).encode()
    except UnicodeEncodeError:
        # Surrogates have no UTF-8 form: escape them as JSON does (chunks=...).
        return json.dumps(payload, separators=(",", ":")).encode()


def _sse(payload: Mapping[str, Any] | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else _json_bytes(payload)
    return b"data: " + data + b"\n\n"


@dataclass
class _Plan:
    d: Directive
    chunks: list[str]
    model: str
    completion_id: str
    request_id: str
    stream: bool
    include_usage: bool
    prompt_tokens: int


class _ChatResponse(Response):
    """Streams (or not) one completion; watches for the client going away meanwhile."""

    def __init__(self, state: ServerState, plan: _Plan) -> None:
        super().__init__()
        self.state = state
        self.plan = plan
        self.done = False  # final body message sent; a later disconnect is normal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = self.state.stats
        stats.active_streams += 1
        disconnected = False
        drop = False
        try:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    # uvicorn's send() silently ignores a gone client; receive() tells us.
                    nonlocal disconnected
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            if not self.done:
                                disconnected = True
                                tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch)
                if self.plan.stream:
                    drop = await self._stream(send)
                else:
                    drop = await self._single(send)
                tg.cancel_scope.cancel()
        finally:
            # Read the live Stats object: /_reset may have replaced it meanwhile.
            stats = self.state.stats
            stats.active_streams -= 1
            if disconnected:
                stats.client_disconnects += 1
            elif drop:
                stats.dropped += 1
            elif self.done:
                stats.completed += 1
        if drop:
            raise _DropConnection  # uvicorn then closes the socket mid-body

    def _header_pairs(self, content_type: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-type", content_type.encode()),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", self.plan.request_id.encode()),
        ]

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.plan.completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.plan.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if self.plan.include_usage:
            body["usage"] = None  # OpenAI puts usage: null on every chunk but the last
        body.update(extra)
        return body

    def _usage(self, completion_tokens: int) -> dict[str, Any]:
        d = self.plan.d
        prompt = d.prompt_tokens if d.prompt_tokens is not None else self.plan.prompt_tokens
        if d.completion_tokens is not None:
            completion_tokens = d.completion_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    async def _stream(self, send: Send) -> bool:
        """Returns True when the connection must be dropped."""
        d, chunks = self.plan.d, self.plan.chunks
        total = len(chunks)

        async def body(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        def at(limit: int | None, sent: int) -> bool:
            # N beyond the reply length triggers just before the finish chunk.
            return limit is not None and min(limit, total) == sent

        async def checkpoint(sent: int) -> bool:
            if at(d.malformed_after, sent):
                await body(b"data: {not json\n\n")
            if at(d.drop_after, sent):
                return True
            if at(d.hang_after, sent):
                await anyio.sleep_forever()  # until the client disconnects
            return False

        await anyio.sleep(d.headers_delay)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": self._header_pairs("text/event-stream; charset=utf-8"),
            }
        )
        if await checkpoint(0):
            return True
        await anyio.sleep(d.first_delay)
        # Real servers send the role chunk together with the first token.
        role = {"role": "assistant", "content": "", "refusal": None}
        await body(_sse(self._chunk([_choice(delta=role)])))
        for i, text in enumerate(chunks):
            if i:
                await anyio.sleep(d.pace)
            await body(_sse(self._chunk([_choice(delta={"content": text})])))
            if await checkpoint(i + 1):
                return True
        finish = _choice(delta={}, finish_reason=d.finish_reason)
        await body(_sse(self._chunk([finish])))
        if self.plan.include_usage:
            await body(_sse(self._chunk([], usage=self._usage(total))))
        self.done = True
        await send({"type": "http.response.body", "body": _sse("[DONE]"), "more_body": False})
        return False

    async def _single(self, send: Send) -> bool:
        d, chunks = self.plan.d, self.plan.chunks
        # Non-streaming: the whole generation time passes before the headers.
        await anyio.sleep(d.headers_delay + d.first_delay + d.pace * max(0, len(chunks) - 1))
        if d.hang_after is not None:
            await anyio.sleep_forever()
        text = "".join(chunks)
        payload = {
            "id": self.plan.completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.plan.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": d.finish_reason,
                }
            ],
            "usage": self._usage(len(chunks)),
        }
        data = _json_bytes(payload)
        if d.malformed_after is not None:
            data = b"{not json"
        headers = self._header_pairs("application/json")
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if d.drop_after is not None:
            # Promise the full length, deliver half: an incomplete body for the client.
            half = data[: len(data) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
            return True
        self.done = True
        await send({"type": "http.response.body", "body": data, "more_body": False})
        return False


def _choice(*, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "index": 0,
        "delta": delta,
        "logprobs": None,
        "finish_reason": finish_reason,
    }


def _prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    # Whitespace words: cheap, deterministic, close enough for usage accounting tests.
    return max(1, sum(len(_content_text(m.get("content")).split()) for m in messages))


# --------------------------------------------------------------------------- endpoints


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.fake
    return state


def _authorized(state: ServerState, request: Request) -> bool:
    if state.require_key is None:
        return True
    return request.headers.get("authorization") == f"Bearer {state.require_key}"


async def chat_completions(request: Request) -> Response:
    state = _state(request)
    stats = state.stats
    stats.requests += 1
    request_id = f"req_fake_{next(state.ids)}"
    stats.last_headers = {k.lower(): v for k, v in request.headers.items()}

    def fail(status: int, message: str | None = None, retry_after: float = 0.0) -> Response:
        state.stats.errors += 1
        return _error_response(
            status, message=message, retry_after=retry_after, request_id=request_id
        )

    try:
        body = await request.json()
    except ValueError:
        return fail(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return fail(400, "The request body must be a JSON object.")
    stats.last_request = body
    state.bodies.append(body)
    del state.bodies[:-_MAX_BODIES]

    if not _authorized(state, request):
        return fail(401)

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return fail(400, "'messages' must be a non-empty array.")
    try:
        pairs = parse_directive_pairs(last_user_text(messages))
        d = build_directive(pairs, state.defaults)
    except DirectiveError as exc:
        return fail(400, f"fake upstream: {exc}")

    stream = bool(body.get("stream"))
    stream_options = body.get("stream_options")
    if d.reject_stream_options and stream_options is not None:
        return fail(400, "Unrecognized request argument supplied: stream_options")
    if d.status is not None:
        # Scenario key: id=..., else the directive itself, so retries share a counter.
        key = d.id if d.id is not None else " ".join(f"{k}={v}" for k, v in sorted(pairs.items()))
        state.failures[key] = state.failures.get(key, 0) + 1
        if d.status_times is None or state.failures[key] <= d.status_times:
            await anyio.sleep(d.headers_delay)
            return fail(d.status, retry_after=d.retry_after)

    plan = _Plan(
        d=d,
        chunks=reply_chunks(d, messages),
        model=str(body.get("model") or state.model),
        completion_id=f"chatcmpl-fake{request_id.rsplit('_', 1)[-1]}",
        request_id=request_id,
        stream=stream,
        include_usage=stream
        and isinstance(stream_options, dict)
        and bool(stream_options.get("include_usage")),
        prompt_tokens=_prompt_tokens(messages),
    )
    return _ChatResponse(state, plan)


async def list_models(request: Request) -> Response:
    state = _state(request)
    if not _authorized(state, request):
        return _error_response(401, request_id=f"req_fake_{next(state.ids)}")
    model = state.model
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {
                    "id": model,
                    "object": "model",
                    "created": 0,
                    "owned_by": "fake-upstream",
                }
            ],
        }
    )


async def get_stats(request: Request) -> Response:
    return JSONResponse(_state(request).stats.as_json())


async def get_requests(request: Request) -> Response:
    return JSONResponse(_state(request).bodies)


async def post_reset(request: Request) -> Response:
    _state(request).reset()
    return JSONResponse({"ok": True})


def create_app(
    defaults: Mapping[str, str] | None = None,
    *,
    model: str = DEFAULT_MODEL,
    require_key: str | None = None,
) -> Starlette:
    """A fresh app; `defaults` are directive pairs applied under each request's own."""
    build_directive({}, defaults)  # fail at startup, not on the first request
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/models", list_models, methods=["GET"]),
            Route("/_stats", get_stats, methods=["GET"]),
            Route("/_requests", get_requests, methods=["GET"]),
            Route("/_reset", post_reset, methods=["POST"]),
        ]
    )
    app.state.fake = ServerState(
        defaults=dict(defaults or {}), model=model, require_key=require_key
    )
    return app


app = create_app()


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.support.fake_upstream",
        description="Fake OpenAI-compatible streaming server (see module docstring).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--model", default=DEFAULT_MODEL, help="id listed by GET /v1/models")
    p.add_argument("--require-key", default=None, help="401 unless 'Authorization: Bearer KEY'")
    p.add_argument("--log-level", default="warning")
    # Defaults for directive keys; a request's own [[fake ...]] overrides them.
    p.add_argument("--tokens", type=int)
    p.add_argument("--pace", type=float)
    p.add_argument("--first-delay", type=float)
    p.add_argument("--headers-delay", type=float)
    p.add_argument("--reply", choices=sorted(CANNED_REPLIES))
    p.add_argument(
        "--directive",
        default="",
        help="any default directive pairs, e.g. 'drop_after=3 retry_after=1'",
    )
    return p


def _defaults_from_args(args: argparse.Namespace) -> dict[str, str]:
    defaults = parse_directive_pairs(f"[[fake {args.directive}]]") if args.directive else {}
    for key in ("tokens", "pace", "first_delay", "headers_delay", "reply"):
        value = getattr(args, key)
        if value is not None:
            defaults[key] = str(value)
    return defaults


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    args = _parser().parse_args(argv)
    server_app = create_app(
        _defaults_from_args(args), model=args.model, require_key=args.require_key
    )
    config = uvicorn.Config(
        server_app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="off",
        # Hung streams would otherwise block shutdown forever.
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run()


# --------------------------------------------------------------------------- pytest helper


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FakeUpstream:
    """Runs the fake in a subprocess on 127.0.0.1:<free port> for the `with` block.

    with FakeUpstream(tokens=20) as up:
        client = openai.AsyncOpenAI(base_url=up.base_url, api_key="test")
        ...
        assert up.stats()["completed"] == 1
    """

    # The module the subprocess runs (a test package may serve extra canned replies).
    module = "tests.support.fake_upstream"

    def __init__(
        self,
        *,
        tokens: int | None = None,
        pace: float | None = None,
        first_delay: float | None = None,
        headers_delay: float | None = None,
        reply: str | None = None,
        directive: str = "",
        model: str = DEFAULT_MODEL,
        require_key: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.model = model
        self.require_key = require_key
        self.startup_timeout = startup_timeout
        self.args: list[str] = ["--model", model]
        if require_key is not None:
            self.args += ["--require-key", require_key]
        if directive:
            self.args += ["--directive", directive]
        flags = {
            "--tokens": tokens,
            "--pace": pace,
            "--first-delay": first_delay,
            "--headers-delay": headers_delay,
            "--reply": reply,
        }
        for flag, value in flags.items():
            if value is not None:
                self.args += [flag, str(value)]
        self.defaults = _defaults_from_args(_parser().parse_args(self.args))
        build_directive({}, self.defaults)  # bad defaults fail here, not in the child
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give openai.AsyncOpenAI(base_url=...)."""
        return f"{self.root_url}/v1"

    def start(self) -> Self:
        # A free port can be taken between probe and bind; just try again. A port already
        # set (a restart after a test stopped the server) is kept.
        last_error = ""
        for _ in range(3):
            self.port = self.port or _free_port()
            # Kept open until stop() so a failed start can show the child's traceback.
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
            self._proc = subprocess.Popen(
                [sys.executable, "-m", self.module, "--port", str(self.port), *self.args],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            if self._wait_ready():
                return self
            last_error = self._read_stderr()
            self.stop()
            self.port = 0
        raise RuntimeError(f"fake upstream did not start: {shlex.join(self.args)}\n{last_error}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                self.stats()
                return True
            time.sleep(0.05)
        return False

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return str(self._stderr.read().decode(errors="replace"))

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, method: str, path: str) -> Any:
        req = urllib.request.Request(self.root_url + path, method=method)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        """GET /_stats: requests, active_streams, completed, client_disconnects, ..."""
        result: dict[str, Any] = self._call("GET", "/_stats")
        return result

    def requests(self) -> list[dict[str, Any]]:
        """Every request body received since the last reset (oldest first, capped)."""
        result: list[dict[str, Any]] = self._call("GET", "/_requests")
        return result

    def reset(self) -> None:
        """Zero the counters, forget request bodies and status_times scenarios."""
        self._call("POST", "/_reset")

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 3.0
    ) -> dict[str, Any]:
        """Poll stats until predicate(stats) holds; AssertionError with the stats if not."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"fake upstream stats never matched: {stats}")
            time.sleep(0.02)

    def expected_text(
        self,
        directive_or_message: str,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """expected_text() with this server's CLI defaults applied."""
        return expected_text(directive_or_message, messages=messages, defaults=self.defaults)


if __name__ == "__main__":
    main()

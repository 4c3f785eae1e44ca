"""The fake upstream, driven through the real openai SDK so its failure modes are
exactly what the app's provider will see."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import openai
import pytest

from tests.support.fake_upstream import (
    CANNED_REPLIES,
    RAW_CHUNKS,
    DirectiveError,
    FakeUpstream,
    directive,
    expected_chunks,
    expected_text,
    strip_directives,
)

USAGE = {"include_usage": True}
# Tests that start the fake server (see the markers in pyproject.toml).
integration = pytest.mark.integration


def client(up: FakeUpstream, **kwargs: Any) -> openai.AsyncOpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=up.base_url, api_key="test", **kwargs)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def collect(stream: Any, into: list[str] | None = None) -> tuple[list[str], Any]:
    """Content deltas and the usage object; `into` fills up even if iteration raises."""
    parts = into if into is not None else []
    usage = None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
    return parts, usage


# --------------------------------------------------------------------------- pure helpers


def test_expected_text_default_and_canned() -> None:
    msg = "hello " + directive(tokens=4)
    assert msg == "hello [[fake tokens=4]]"
    assert expected_text(msg) == "tok0 tok1 tok2 tok3 "
    assert expected_text("no directive") == "".join(f"tok{i} " for i in range(12))
    assert expected_text("x [[fake tokens=1]]", defaults={"tokens": "3"}) == "tok0 "
    md = expected_text("[[fake reply=markdown tokens=99]]")  # tokens ignored
    assert md == CANNED_REPLIES["markdown"]
    assert "| ---- |" in md and "```python" in md and "](https://" in md
    assert "<script>" in expected_text("[[fake reply=xss]]")
    assert all(len(c) <= 8 for c in expected_chunks("[[fake reply=japanese]]"))
    assert strip_directives("hi [[fake tokens=2]] there") == "hi  there"


def test_bad_directives_fail_loudly() -> None:
    for bad in ("[[fake tokenz=3]]", "[[fake tokens=-1]]", "[[fake reply=nope]]"):
        with pytest.raises(DirectiveError):
            expected_text(bad)
    with pytest.raises(ValueError, match="messages"):
        expected_text("[[fake echo=1]]")


# --------------------------------------------------------------------------- via the SDK


@integration
def test_default_stream_text_and_usage(upstream: FakeUpstream) -> None:
    msg = "Hi there [[fake tokens=5]]"

    async def run() -> None:
        async with client(upstream) as c:
            stream = await c.chat.completions.create(
                model="fake", messages=user(msg), stream=True, stream_options=USAGE
            )
            parts, usage = await collect(stream)
        assert "".join(parts) == expected_text(msg) == upstream.expected_text(msg)
        assert parts == [f"tok{i} " for i in range(5)]
        assert usage is not None
        assert usage.completion_tokens == 5
        assert usage.total_tokens == usage.prompt_tokens + 5

    asyncio.run(run())
    stats = upstream.wait_for(lambda s: s["active_streams"] == 0)
    assert stats["completed"] == 1 and stats["client_disconnects"] == 0
    assert stats["last_request"]["stream_options"] == USAGE


@integration
def test_raw_chunks_odd_finish_reason_and_usage(upstream: FakeUpstream) -> None:
    msg = "odd " + directive(
        chunks="odd_text", finish_reason="x" * 40, prompt_tokens=2**40, completion_tokens=-3
    )

    async def run() -> None:
        async with client(upstream) as c:
            stream = await c.chat.completions.create(
                model="fake", messages=user(msg), stream=True, stream_options=USAGE
            )
            reasons: list[str] = []
            parts: list[str] = []
            usage = None
            async for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                    if choice.finish_reason:
                        reasons.append(choice.finish_reason)
        # The SDK hands over exactly what a misbehaving model would send.
        assert parts == RAW_CHUNKS["odd_text"]
        assert reasons == ["x" * 40]
        assert (usage.prompt_tokens, usage.completion_tokens) == (2**40, -3)

    asyncio.run(run())
    with pytest.raises(DirectiveError):
        expected_text("[[fake chunks=nope]]")


@integration
def test_japanese_reply_and_models(upstream: FakeUpstream) -> None:
    msg = "[[fake reply=japanese]]"

    async def run() -> None:
        async with client(upstream) as c:
            models = await c.models.list()
            assert [m.id for m in models.data] == ["fake"]
            stream = await c.chat.completions.create(model="fake", messages=user(msg), stream=True)
            parts, usage = await collect(stream)
        assert "".join(parts) == CANNED_REPLIES["japanese"]
        assert usage is None  # not asked for

    asyncio.run(run())


@integration
def test_non_stream_echo(upstream: FakeUpstream) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi [[fake echo=1]]"},
    ]

    async def run() -> None:
        async with client(upstream) as c:
            reply = await c.chat.completions.create(model="fake", messages=messages)
        text = reply.choices[0].message.content
        assert text == expected_text(messages[-1]["content"], messages=messages)
        assert json.loads(text or "") == messages
        assert reply.choices[0].finish_reason == "stop"

    asyncio.run(run())


@integration
def test_drop_after_is_a_connection_error(upstream: FakeUpstream) -> None:
    async def run() -> None:
        parts: list[str] = []
        async with client(upstream) as c:
            stream = await c.chat.completions.create(
                model="fake",
                messages=user("[[fake tokens=10 drop_after=3]]"),
                stream=True,
                stream_options=USAGE,
            )
            with pytest.raises(openai.APIConnectionError):
                await collect(stream, parts)
        assert parts == ["tok0 ", "tok1 ", "tok2 "]

    asyncio.run(run())
    stats = upstream.wait_for(lambda s: s["active_streams"] == 0)
    assert stats["dropped"] == 1 and stats["completed"] == 0


@integration
def test_status_429_is_rate_limit(upstream: FakeUpstream) -> None:
    async def run() -> None:
        async with client(upstream) as c:
            with pytest.raises(openai.RateLimitError) as info:
                await c.chat.completions.create(
                    model="fake", messages=user("[[fake status=429]]"), stream=True
                )
        assert info.value.response.headers["retry-after"] == "0"
        assert isinstance(info.value.body, dict)
        assert info.value.body["code"] == "rate_limit_exceeded"

    asyncio.run(run())


@integration
def test_status_times_lets_the_retry_succeed(upstream: FakeUpstream) -> None:
    msg = "[[fake status=500 status_times=1 id=retry-once tokens=3]]"

    async def run() -> None:
        async with client(upstream, max_retries=1) as c:
            stream = await c.chat.completions.create(model="fake", messages=user(msg), stream=True)
            parts, _ = await collect(stream)
        assert "".join(parts) == expected_text(msg)

    started = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - started < 2  # retry-after-ms keeps the SDK backoff short
    stats = upstream.stats()
    assert stats["requests"] == 2 and stats["errors"] == 1 and stats["completed"] == 1


@integration
def test_hang_after_hits_the_read_timeout(upstream: FakeUpstream) -> None:
    async def run() -> None:
        parts: list[str] = []
        async with client(upstream) as c:
            stream = await c.chat.completions.create(
                model="fake",
                messages=user("[[fake tokens=10 hang_after=2]]"),
                stream=True,
                timeout=openai.Timeout(5, read=0.5),
            )
            with pytest.raises(openai.APITimeoutError):
                await collect(stream, parts)
        assert parts == ["tok0 ", "tok1 "]

    asyncio.run(run())
    # The SDK closes the response on the error; the fake must notice.
    stats = upstream.wait_for(lambda s: s["active_streams"] == 0)
    assert stats["client_disconnects"] == 1


@integration
def test_malformed_chunk_raises(upstream: FakeUpstream) -> None:
    async def run() -> None:
        parts: list[str] = []
        async with client(upstream) as c:
            stream = await c.chat.completions.create(
                model="fake",
                messages=user("[[fake tokens=5 malformed_after=2]]"),
                stream=True,
            )
            with pytest.raises(ValueError):  # json.JSONDecodeError from the SDK
                await collect(stream, parts)
        assert parts == ["tok0 ", "tok1 "]

    asyncio.run(run())


@integration
def test_client_close_mid_stream_is_seen_upstream(upstream: FakeUpstream) -> None:
    async def run() -> None:
        async with client(upstream) as c:
            stream = await c.chat.completions.create(
                model="fake",
                messages=user("[[fake tokens=200 pace=0.05]]"),
                stream=True,
            )
            seen = 0
            async for chunk in stream:
                seen += bool(chunk.choices and chunk.choices[0].delta.content)
                if seen == 2:
                    break
            assert upstream.stats()["active_streams"] == 1
            await stream.close()  # what the app does when the user presses stop
            stats = await asyncio.to_thread(upstream.wait_for, lambda s: s["active_streams"] == 0)
            assert stats["client_disconnects"] == 1 and stats["completed"] == 0

    asyncio.run(run())


@integration
def test_first_delay_and_headers_delay(upstream: FakeUpstream) -> None:
    async def first_token_times(msg: str) -> tuple[float, float]:
        async with client(upstream) as c:
            start = time.monotonic()
            stream = await c.chat.completions.create(model="fake", messages=user(msg), stream=True)
            headers_at = time.monotonic() - start
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
            await stream.close()
            return headers_at, time.monotonic() - start

    headers_at, token_at = asyncio.run(first_token_times("[[fake first_delay=0.3]]"))
    assert headers_at < 0.25
    assert token_at >= 0.3
    headers_at, _ = asyncio.run(first_token_times("[[fake headers_delay=0.3]]"))
    assert headers_at >= 0.3


@integration
def test_reject_stream_options(upstream: FakeUpstream) -> None:
    async def run() -> None:
        async with client(upstream) as c:
            with pytest.raises(openai.BadRequestError):
                await c.chat.completions.create(
                    model="fake",
                    messages=user("[[fake reject_stream_options=1]]"),
                    stream=True,
                    stream_options=USAGE,
                )

    asyncio.run(run())


@integration
def test_require_key() -> None:
    async def run(up: FakeUpstream) -> None:
        bad = openai.AsyncOpenAI(base_url=up.base_url, api_key="wrong", max_retries=0)
        async with bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()
            with pytest.raises(openai.AuthenticationError):
                await bad.chat.completions.create(model="fake", messages=user("hi"))
        good = openai.AsyncOpenAI(base_url=up.base_url, api_key="sekret", max_retries=0)
        async with good:
            reply = await good.chat.completions.create(model="fake", messages=user("hi"))
        assert reply.choices[0].message.content == up.expected_text("hi")

    with FakeUpstream(require_key="sekret", tokens=2) as up:
        asyncio.run(run(up))
        assert up.stats()["last_headers"]["authorization"] == "Bearer sekret"

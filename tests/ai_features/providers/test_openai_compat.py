"""OpenAICompatibleProvider through the real openai SDK against the fake upstream: text and
usage, and every upstream failure turned into its stable code with a message that never
shows the upstream's URL or key."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest

from ai_features.providers import Delta, ProviderError, get_provider
from ai_features.providers.openai_compat import (
    OpenAICompatibleProvider,
    _body_reads,
    _Lines,
    _parse_chunk,
    build_client,
)
from tests.support.fake_upstream import FakeUpstream, directive, expected_chunks, expected_text

pytestmark = pytest.mark.integration

API_KEY = "sk-test-provider-secret-0123456789"


# Clients built by this test, closed at its end: an aiohttp session belongs to its loop.
_clients: list[openai.AsyncOpenAI] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _clients:
        await _clients.pop().close()


def provider_for(
    up: FakeUpstream, *, max_retries: int = 0, timeout: Any = 10.0, base_url: str | None = None
) -> OpenAICompatibleProvider:
    # The client the service builds (build_client), so these tests cover its transport.
    client = build_client(
        base_url=base_url or up.base_url,
        api_key=API_KEY,
        max_retries=max_retries,
        timeout=timeout,
    )
    _clients.append(client)
    return OpenAICompatibleProvider(client, "fake")


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


async def run(
    provider: OpenAICompatibleProvider, text: str
) -> tuple[list[Delta], ProviderError | None]:
    deltas: list[Delta] = []
    try:
        async for delta in provider.astream(ask(text)):
            deltas.append(delta)
    except ProviderError as error:
        return deltas, error
    return deltas, None


def app_log_lines(caplog: Any) -> list[str]:
    # The app's own lines. (HTTP libraries log hosts at DEBUG; settings keep those quiet.)
    return [r.getMessage() for r in caplog.records if r.name.startswith("ai_features")]


def assert_nothing_secret(error: ProviderError, up: FakeUpstream, caplog: Any) -> None:
    secrets = [API_KEY, up.base_url, up.root_url, f"127.0.0.1:{up.port}", str(up.port)]
    shown = [str(error), error.message, repr(error), error.code]
    logged = app_log_lines(caplog)
    assert logged, "the failure should be logged (with its code)"
    assert any(error.code in line for line in logged)
    for secret in secrets:
        for text in shown + logged:
            assert secret not in text, (secret, text)
    # Not chained for display either: `raise ... from None`.
    assert error.__suppress_context__ and error.__cause__ is None
    assert error.message == ProviderError.MESSAGES[error.code]


async def test_streams_text_then_finish_and_usage(upstream: FakeUpstream) -> None:
    message = "hello " + directive(tokens=5)

    deltas, error = await run(provider_for(upstream), message)

    assert error is None
    texts = [d.text for d in deltas if d.text]
    assert texts == expected_chunks(message)
    assert "".join(texts) == expected_text(message)
    final = deltas[-1]
    assert final.text == "" and final.finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.completion_tokens == 5
    assert final.usage.prompt_tokens > 0
    # Only the last delta carries the end.
    assert all(d.finish_reason is None and d.usage is None for d in deltas[:-1])
    sent = upstream.requests()[-1]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "fake"
    assert sent["messages"] == ask(message)


async def test_japanese_text_arrives_intact(upstream: FakeUpstream) -> None:
    message = "こんにちは " + directive(reply="japanese")

    deltas, error = await run(provider_for(upstream), message)

    assert error is None
    assert "".join(d.text for d in deltas) == expected_text(message)


async def test_429_is_upstream_rate_limited(upstream: FakeUpstream, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)

    deltas, error = await run(provider_for(upstream), "x " + directive(status=429))

    assert deltas == []
    assert error is not None and error.code == "upstream_rate_limited"
    assert upstream.stats()["requests"] == 1
    assert_nothing_secret(error, upstream, caplog)


async def test_429_once_then_the_sdk_retry_succeeds(upstream: FakeUpstream) -> None:
    message = "x " + directive(status=429, status_times=1, id="retry-once", tokens=3)

    deltas, error = await run(provider_for(upstream, max_retries=2), message)

    assert error is None
    assert "".join(d.text for d in deltas) == expected_text(message)
    assert deltas[-1].finish_reason == "stop"
    assert upstream.stats()["requests"] == 2


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "upstream_error"),
        (503, "upstream_error"),
        (400, "upstream_error"),
        (401, "upstream_auth"),
        (403, "upstream_auth"),
    ],
)
async def test_error_statuses(upstream: FakeUpstream, caplog: Any, status: int, code: str) -> None:
    caplog.set_level(logging.DEBUG)

    deltas, error = await run(provider_for(upstream), "x " + directive(status=status))

    assert deltas == []
    assert error is not None and error.code == code
    assert_nothing_secret(error, upstream, caplog)


@pytest.mark.parametrize(
    ("fault", "kept", "code"),
    [
        pytest.param(
            {"tokens": 8, "drop_after": 3}, 3, "upstream_disconnected", id="dropped_connection"
        ),
        pytest.param(
            {"tokens": 6, "malformed_after": 2}, 2, "upstream_bad_response", id="malformed_chunk"
        ),
    ],
)
async def test_a_fault_mid_answer_keeps_the_text_before_it_and_names_the_fault(
    upstream: FakeUpstream, caplog: Any, fault: dict[str, int], kept: int, code: str
) -> None:
    caplog.set_level(logging.DEBUG)
    message = "x " + directive(**fault)

    deltas, error = await run(provider_for(upstream), message)

    assert [d.text for d in deltas] == expected_chunks(message)[:kept]
    assert error is not None and error.code == code
    assert_nothing_secret(error, upstream, caplog)


async def test_dropped_before_any_text_is_upstream_unavailable(upstream: FakeUpstream) -> None:
    deltas, error = await run(provider_for(upstream), "x " + directive(drop_after=0))

    assert deltas == []
    assert error is not None and error.code == "upstream_unavailable"


async def test_nothing_listening_is_upstream_unavailable(
    upstream: FakeUpstream, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{closed_port}/v1"

    deltas, error = await run(provider_for(upstream, base_url=base_url), "hi")

    assert deltas == []
    assert error is not None and error.code == "upstream_unavailable"
    for text in [str(error), error.message, *app_log_lines(caplog)]:
        assert str(closed_port) not in text and API_KEY not in text


@pytest.mark.parametrize("where", ["hang_after=2", "hang=1", "first_delay=5", "headers_delay=5"])
async def test_silence_longer_than_the_read_timeout_is_upstream_timeout(
    upstream: FakeUpstream, caplog: Any, where: str
) -> None:
    caplog.set_level(logging.DEBUG)
    key, value = where.split("=")
    message = "x " + directive(tokens=6, **{key: value})
    timeout = openai.Timeout(10.0, read=0.3)

    deltas, error = await run(provider_for(upstream, timeout=timeout), message)

    expected_before = 2 if key == "hang_after" else 0
    assert [d.text for d in deltas] == expected_chunks(message)[:expected_before]
    assert error is not None and error.code == "upstream_timeout"
    assert_nothing_secret(error, upstream, caplog)


async def test_server_that_rejects_stream_options_still_streams(upstream: FakeUpstream) -> None:
    provider = provider_for(upstream)
    message = "x " + directive(tokens=4, reject_stream_options=1)

    deltas, error = await run(provider, message)

    assert error is None
    assert "".join(d.text for d in deltas) == expected_text(message)
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is None  # that server cannot report it
    first, retried = upstream.requests()
    assert "stream_options" in first and "stream_options" not in retried

    # Learnt once: the next request does not ask for usage again.
    upstream.reset()
    deltas, error = await run(provider, "y " + directive(tokens=2, reject_stream_options=1))
    assert error is None and "".join(d.text for d in deltas) == "tok0 tok1 "
    assert len(upstream.requests()) == 1
    assert "stream_options" not in upstream.requests()[0]


async def test_cancelling_the_consumer_closes_the_upstream_response(
    upstream: FakeUpstream,
) -> None:
    provider = provider_for(upstream)
    stream = provider.astream(ask("x " + directive(tokens=50, pace=0.05)))
    first = await anext(stream)
    assert first.text == "tok0 "
    upstream.wait_for(lambda s: s["active_streams"] == 1)

    await stream.aclose()

    # Polled off the loop: a closed transport releases its socket on the loop's next turn.
    stats = await asyncio.to_thread(
        upstream.wait_for, lambda s: s["active_streams"] == 0, timeout=5
    )
    assert stats["client_disconnects"] == 1
    assert stats["completed"] == 0


def test_from_settings_uses_the_configured_upstream(
    upstream: FakeUpstream, settings: Any, uncached_get_provider: None
) -> None:
    settings.OPENAI_API_KEY = API_KEY
    settings.OPENAI_BASE_URL = upstream.base_url
    settings.OPENAI_MODEL = "fake-model"
    settings.OPENAI_TIMEOUT = 12.5
    settings.OPENAI_MAX_RETRIES = 1
    provider = get_provider()

    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.model == "fake-model"
    assert str(provider.client.base_url).rstrip("/") == upstream.base_url
    assert provider.client.max_retries == 1
    assert provider.client.timeout.read == 12.5


def test_base_url_alone_selects_the_compatible_provider(
    upstream: FakeUpstream, settings: Any, uncached_get_provider: None
) -> None:
    # Local servers (Ollama, llama.cpp) need no key.
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = upstream.base_url
    provider = get_provider()

    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.client.api_key  # the SDK needs one; any placeholder will do


async def test_a_model_per_call_is_sent_upstream(upstream: FakeUpstream) -> None:
    provider = provider_for(upstream)
    deltas = [
        d async for d in provider.astream(ask("hi " + directive(tokens=2)), model="fake-large")
    ]
    assert deltas[-1].finish_reason == "stop"
    _default = [d async for d in provider.astream(ask("hi " + directive(tokens=1)))]

    assert [r["model"] for r in upstream.requests()] == ["fake-large", "fake"]
    assert provider.model_for(None) == "fake" and provider.model_for("x") == "x"


async def test_acomplete_returns_the_whole_short_answer(upstream: FakeUpstream) -> None:
    provider = provider_for(upstream)

    title = await provider.acomplete(ask("name it " + directive(tokens=3)), max_tokens=24)

    assert title == expected_text("name it " + directive(tokens=3))
    (request,) = upstream.requests()
    assert request["max_tokens"] == 24 and not request.get("stream")


async def test_acomplete_failures_are_coded(upstream: FakeUpstream) -> None:
    provider = provider_for(upstream)

    with pytest.raises(ProviderError) as caught:
        await provider.acomplete(ask("x " + directive(status=429)))

    assert caught.value.code == "upstream_rate_limited"


async def test_more_than_a_hundred_streams_are_open_at_once(upstream: FakeUpstream) -> None:
    # aiohttp's connector caps a pool at 100 connections unless told otherwise: the client
    # must not queue the 101st stream behind the others.
    provider = provider_for(upstream)
    streams = [provider.astream(ask(f"q{i} " + directive(tokens=2, pace=3))) for i in range(120)]
    try:
        firsts = await asyncio.wait_for(asyncio.gather(*(anext(s) for s in streams)), 8)
        assert [d.text for d in firsts] == ["tok0 "] * 120
        stats = await asyncio.to_thread(upstream.wait_for, lambda s: s["active_streams"] == 120)
        assert stats["requests"] == 120
    finally:
        for stream in streams:
            await stream.aclose()


def lines_of(*reads: bytes) -> list[bytes]:
    """The lines `_Lines` makes of a body that arrives in the given reads."""
    lines = _Lines()
    return [line for data in reads for line in lines.feed(data)] + lines.rest()


@pytest.mark.parametrize(
    "reads",
    [
        [b"data: {}\n\ndata: [DONE]\n\n"],
        [b"da", b"ta: {}\n", b"\ndata: [DO", b"NE]\n\n"],
        [b"data: {}\r\n\r\ndata: [DONE]\r\n\r\n"],
        [b"data: {}\r", b"\n\r\ndata: [DONE]\r", b"\n"],
        [b"data: {}\r\rdata: [DONE]"],  # bare \r ends a line too; no end after the last
    ],
)
def test_lines_join_reads_and_split_at_every_line_end(reads: list[bytes]) -> None:
    assert [line for line in lines_of(*reads) if line] == [b"data: {}", b"data: [DONE]"]


def test_lines_keep_a_character_cut_between_two_reads() -> None:
    body = 'data: {"c": "日本語"}\n\n'.encode()
    cut = body.index("本".encode()) + 1  # inside the character's three bytes
    lines = lines_of(body[:cut], body[cut:])
    assert _parse_chunk(lines[0][5:]) == {"c": "日本語"}


async def _reads_of(response: httpx2.Response) -> list[bytes]:
    return [data async for data in _body_reads(response)]


async def test_a_plain_body_is_read_from_the_response_stream_as_it_comes() -> None:
    reads = [b"data: {}\n", b"\n"]

    async def body() -> AsyncIterator[bytes]:
        for data in reads:
            yield data

    response = httpx2.Response(200, content=body())
    assert _body_reads(response) is response.stream
    assert await _reads_of(response) == reads


async def test_an_encoded_body_is_decoded() -> None:
    """A proxy may gzip the event stream: the bytes read are the decoded ones."""
    text = b"data: {}\n\ndata: [DONE]\n\n"

    async def body() -> AsyncIterator[bytes]:
        yield gzip.compress(text)

    response = httpx2.Response(200, headers={"content-encoding": "gzip"}, content=body())
    assert b"".join(await _reads_of(response)) == text


def test_a_chunk_with_bytes_that_are_not_utf8_still_parses() -> None:
    # As the SDK's text decoder did: each bad byte becomes U+FFFD.
    assert _parse_chunk(b'{"c": "a\xffb"}') == {"c": "a\ufffdb"}

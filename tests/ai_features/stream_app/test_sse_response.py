"""The stream service's SSE response, driven as an ASGI server drives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ai_features.chat.events import PING, ChatEvent, Ping, content_data, done_data
from ai_features.stream_app.sse_response import EventStreamResponse

SCOPE = {"type": "http", "method": "GET", "path": "/"}


class Source:
    """Events with an optional pause before the next one; records whether it was closed."""

    def __init__(self, items: list[ChatEvent | Ping], pause_after: int | None = None) -> None:
        self.items = items
        self.pause_after = pause_after
        self.closed = False
        self.resume = asyncio.Event()

    async def _gen(self) -> AsyncIterator[ChatEvent | Ping]:
        try:
            for index, item in enumerate(self.items):
                if index == self.pause_after:
                    await self.resume.wait()
                yield item
        finally:
            self.closed = True

    def __aiter__(self) -> AsyncIterator[ChatEvent | Ping]:
        self._it = self._gen()
        return self._it

    async def aclose(self) -> None:
        await self._it.aclose()


def events(n: int) -> list[ChatEvent | Ping]:
    items: list[ChatEvent | Ping] = [ChatEvent(i + 1, content_data(f"t{i}")) for i in range(n)]
    return [*items, ChatEvent(n + 1, done_data("m", "stop", None))]


async def never_disconnects() -> dict:
    await asyncio.Event().wait()
    return {}


async def test_every_frame_then_the_end_of_the_body() -> None:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    source = Source([PING, *events(3)])
    await EventStreamResponse(source, send_timeout=5)(SCOPE, never_disconnects, send)

    start, *bodies, end = sent
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-cache, no-transform"
    assert headers[b"x-accel-buffering"] == b"no"
    assert bodies[0]["body"] == b": ping\n\n"
    assert [b["body"].split(b"\n")[0] for b in bodies[1:]] == [
        b"id: 1",
        b"id: 2",
        b"id: 3",
        b"id: 4",
    ]
    assert all(b["more_body"] for b in bodies)
    assert end == {"type": "http.response.body", "body": b"", "more_body": False}
    assert source.closed


async def test_a_disconnect_ends_the_response_and_closes_the_reader() -> None:
    gone = asyncio.Event()

    async def receive() -> dict:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        pass

    source = Source(events(3), pause_after=1)  # waits for a token that is slow to come
    response = asyncio.create_task(
        EventStreamResponse(source, send_timeout=5)(SCOPE, receive, send)
    )
    await asyncio.sleep(0.05)
    gone.set()
    await asyncio.wait_for(response, 2)  # ends quietly, not cancelled
    assert source.closed


async def test_a_reader_that_stops_reading_is_dropped_after_the_send_timeout() -> None:
    sent: list[dict] = []
    stalled = asyncio.Event()

    async def send(message: dict) -> None:
        if len(sent) == 2:  # the transport is full from the second event on
            await stalled.wait()
        sent.append(message)

    source = Source(events(5))
    began = asyncio.get_running_loop().time()
    await asyncio.wait_for(
        EventStreamResponse(source, send_timeout=0.3)(SCOPE, never_disconnects, send), 3
    )
    waited = asyncio.get_running_loop().time() - began
    assert 0.3 <= waited < 1.5
    assert len(sent) == 2  # the head and one event; never the end of the body
    assert source.closed


async def test_a_slow_but_moving_reader_is_not_dropped() -> None:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        await asyncio.sleep(0.05)  # every send waits a little, none for the timeout
        sent.append(message)

    await EventStreamResponse(Source(events(8)), send_timeout=0.2)(SCOPE, never_disconnects, send)
    assert sent[-1]["more_body"] is False


async def test_a_cancellation_from_the_server_is_not_swallowed() -> None:
    async def send(message: dict) -> None:
        pass

    source = Source(events(3), pause_after=1)
    response = asyncio.create_task(
        EventStreamResponse(source, send_timeout=5)(SCOPE, never_disconnects, send)
    )
    await asyncio.sleep(0.05)
    response.cancel()
    done, _ = await asyncio.wait({response}, timeout=2)
    assert done and response.cancelled()
    assert source.closed

"""The one SSE reader of the test suites: what a client saw on a response of the stream
endpoints, every line kept (events with ids and arrival times, ping comments, retry
fields), read from a streaming httpx response, a whole body or raw-socket lines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

FINAL_TYPES = ("done", "error")


def answer_text(events: list[Any]) -> str:
    """The answer as a client builds it: reset on `start`, append each `content`."""
    text = ""
    for event in events:
        if event.type == "start":
            text = ""
        elif event.type == "content":
            text += event.data["content"]
    return text


@dataclass
class SSEEvent:
    id: int | None
    data: dict[str, Any]
    at: float  # monotonic arrival time

    @property
    def type(self) -> str:
        return self.data["type"]


@dataclass
class StreamResult:
    """Everything a client saw on one response, lines and timing included."""

    status: int
    headers: httpx.Headers
    started: float = 0.0
    events: list[SSEEvent] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    # Events that carried a retry: field (by index into events).
    retry_on: list[int] = field(default_factory=list)

    @property
    def retry(self) -> int | None:
        """The reconnection delay the client would use: the last retry: field seen."""
        return self.retries[-1] if self.retries else None

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    @property
    def ids(self) -> list[int | None]:
        return [e.id for e in self.events]

    @property
    def text(self) -> str:
        return answer_text(self.events)

    @property
    def final(self) -> SSEEvent:
        assert self.events, "no events at all"
        assert self.events[-1].type in FINAL_TYPES, self.types[-5:]
        return self.events[-1]

    def first(self, type_: str) -> SSEEvent:
        return next(e for e in self.events if e.type == type_)

    @property
    def start(self) -> SSEEvent:
        return self.first("start")

    @property
    def message_id(self) -> str:
        return self.start.data["message_id"]

    @property
    def conversation_id(self) -> str:
        return self.start.data["conversation_id"]

    def ended_with_one_final(self) -> bool:
        return sum(t in FINAL_TYPES for t in self.types) == 1 and self.types[-1] in FINAL_TYPES


class SseReader:
    """Incremental parser for SSE lines (shared by the httpx, whole-body and raw-socket
    readers), adding what it reads to `result`."""

    def __init__(self, result: StreamResult) -> None:
        self.result = result
        self._id: int | None = None
        self._data: list[str] = []
        self._retry = False

    def feed(self, line: str) -> SSEEvent | None:
        """Take one line (without its end); return the event it completes, if any."""
        result = self.result
        if line.startswith(":"):
            result.pings.append(time.monotonic())
            result.comments.append(line)
        elif line.startswith("id:"):
            self._id = int(line[3:].strip())
        elif line.startswith("retry:"):
            result.retries.append(int(line[6:].strip()))
            self._retry = True
        elif line.startswith("data:"):
            self._data.append(line[5:].strip())
        elif line == "" and self._data:
            event = SSEEvent(self._id, json.loads("\n".join(self._data)), time.monotonic())
            if self._retry:
                result.retry_on.append(len(result.events))
            result.events.append(event)
            self._id, self._data, self._retry = None, [], False
            return event
        return None


def read_sse(
    response: httpx.Response,
    *,
    stop_after: int | None = None,
    on_event: Callable[[SSEEvent], None] | None = None,
    max_seconds: float | None = None,
) -> StreamResult:
    """Read a streaming response until the final event (or `stop_after` events, to simulate
    a client drop, or `max_seconds`, for a stream that might never end)."""
    result = StreamResult(response.status_code, response.headers, started=time.monotonic())
    reader = SseReader(result)
    for line in response.iter_lines():
        if max_seconds is not None and time.monotonic() - result.started > max_seconds:
            break
        event = reader.feed(line)
        if event is None:
            continue
        if on_event is not None:
            on_event(event)
        if stop_after is not None and len(result.events) >= stop_after:
            break
        if event.type in FINAL_TYPES:
            break
    return result


def parse_sse_body(status: int, headers: httpx.Headers, body: bytes) -> StreamResult:
    """A whole body read at once (a refusal, or bytes off a raw socket): every event in it."""
    result = StreamResult(status, headers, started=time.monotonic())
    reader = SseReader(result)
    for line in [*body.decode().split("\n"), ""]:
        reader.feed(line.rstrip("\r"))
    return result


def request_sse(
    method: str,
    url: str,
    *,
    cookies: httpx.Cookies | dict[str, str] | None = None,
    timeout: float = 30,
    stop_after: int | None = None,
    on_event: Callable[[SSEEvent], None] | None = None,
    max_seconds: float | None = None,
    **request: Any,
) -> StreamResult:
    """Send one request on a connection of its own (as a browser's EventSource or fetch
    stream does) and read its answer with `read_sse`; `request` goes to httpx (headers,
    content, json, params)."""
    with (
        httpx.Client(timeout=timeout, cookies=cookies) as http,
        http.stream(method, url, **request) as response,
    ):
        return read_sse(response, stop_after=stop_after, on_event=on_event, max_seconds=max_seconds)

"""The one SSE encoder both servers use (sse-starlette's ServerSentEvent does the framing)."""

from __future__ import annotations

import json

from sse_starlette.event import ServerSentEvent

from .events import ChatEvent, Ping

# Tells EventSource how long to wait before reconnecting after a dropped connection.
RETRY_MILLISECONDS = 3000
SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def encode(item: ChatEvent | Ping, *, first: bool = False) -> bytes:
    if isinstance(item, Ping):
        return ServerSentEvent(comment="ping", sep="\n").encode()
    return ServerSentEvent(
        data=json.dumps(item.data, ensure_ascii=False),
        id=str(item.id),
        retry=RETRY_MILLISECONDS if first else None,
        sep="\n",
    ).encode()


class StreamEncoder:
    """Encodes one response's events in order: `retry:` rides on the first real event,
    even when pings went out before it (a resume waiting for the next token)."""

    def __init__(self) -> None:
        self._first = True

    def __call__(self, item: ChatEvent | Ping) -> bytes:
        encoded = encode(item, first=self._first)
        self._first = self._first and isinstance(item, Ping)
        return encoded


def encode_error_body(data: dict) -> bytes:
    """The whole body of a response refused before streaming: one `error` event."""
    return encode(ChatEvent(id=0, data=data), first=True)

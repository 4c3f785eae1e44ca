"""The one SSE encoder both servers use.

The frames are written here rather than by a library: the format is three fixed lines
(`id:`, `data:`, optionally `retry:`) and a blank one, and the data is JSON, which never
contains a raw CR or LF (JSON escapes them), so it is always one `data:` line. Building the
bytes directly is what the hot path wants (one formatting step per event, no per-line
splitting); the frames are laid out as sse-starlette's `ServerSentEvent(..., sep="\\n")`
wrote them, with compact JSON (orjson) in the `data:` line.
"""

from __future__ import annotations

import json

import orjson

from .events import ChatEvent, Ping

# Tells EventSource how long to wait before reconnecting after a dropped connection.
RETRY_MILLISECONDS = 3000
SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
PING_FRAME = b": ping\n\n"
_RETRY_LINE = f"retry: {RETRY_MILLISECONDS}\n".encode()


def encode_data(data: dict) -> bytes:
    """JSON of an event, UTF-8 as is (no \\u escapes of non-ASCII text). orjson is the fast
    path; anything it refuses (an integer beyond 64 bits, say) goes through `json`."""
    try:
        return orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(data, ensure_ascii=False).encode()


def encode(item: ChatEvent | Ping, *, first: bool = False) -> bytes:
    if isinstance(item, Ping):
        return PING_FRAME
    frame = b"id: %d\ndata: %b\n" % (item.id, encode_data(item.data))
    return frame + _RETRY_LINE + b"\n" if first else frame + b"\n"


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

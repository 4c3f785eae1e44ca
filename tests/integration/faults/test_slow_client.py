"""Issue item 6: a client that stops reading neither grows the stream service's memory
without bound nor blocks anyone else: its response is dropped after
STREAM_SEND_TIMEOUT_SECONDS, and the generation still finishes and is stored whole."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.support.coalesced import assert_ids_increase
from tests.support.fake_upstream import directive, expected_text
from tests.support.sse import parse_sse_body

from .bulk_upstream import BULK_TEXT
from .conftest import PROFILES
from .helpers import (
    process_rss_kib,
    raw_request,
    read_all,
    read_head,
    wait_until,
)

pytestmark = pytest.mark.integration

SEND_TIMEOUT = float(PROFILES["faults"]["STREAM_SEND_TIMEOUT_SECONDS"])


def test_a_stalled_reader_is_dropped_and_blocks_nobody(stack, make_user):
    stalled, other = make_user(), make_user()
    pid = stack.stream.process.pid
    rss_before = process_rss_kib(pid)
    upstream_before = stack.upstream.stats()
    body = json.dumps({"message": "bulk " + directive(reply="bulk")}).encode()
    head = (
        "POST /api/ai/chat/stream/ HTTP/1.1\r\n"
        f"Host: localhost:{stack.stream_port}\r\n"
        f"Authorization: Bearer {stalled.token}\r\n"
        f"Origin: {stack.app_url}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    # A small receive buffer, and then no reading at all after the response head.
    sock = raw_request(stack.stream_port, head, body, rcvbuf=4096)
    try:
        status, headers, _ = read_head(sock, timeout=10)
        assert status == 200
        request_id = headers["x-request-id"]

        # Meanwhile another user's stream runs normally, not held up by the stalled one.
        began = time.monotonic()
        result = other.post_stream({"message": "meanwhile " + directive(tokens=6)})
        assert result.final.type == "done"
        assert result.text == expected_text(directive(tokens=6))
        assert time.monotonic() - began < SEND_TIMEOUT

        # The generation does not wait for its reader: it reads the upstream to the end...
        stack.upstream.wait_for(
            lambda s: (
                s["completed"] == upstream_before["completed"] + 2
                and s["active_streams"] == upstream_before["active_streams"]
            ),
            timeout=30,
        )
        # ...and is stored whole.
        conversation_id = stalled.conversations()[0]["id"]
        message_id = stalled.history(conversation_id)[1]["id"]
        # (Each look at the history copies the megabytes: look rarely.)
        stored = stalled.wait_stored(conversation_id, message_id, timeout=20, interval=0.5)
        assert stored["status"] == "complete"
        assert stored["content"] == BULK_TEXT

        # The stalled response ends on the server (its request is logged as done) while
        # the client still has not read a byte of it.
        access = re.compile(rf"\[req={request_id}\] POST /api/ai/chat/stream/ 200 ")
        wait_until(
            lambda: access.search(stack.stream.log_text()),
            timeout=SEND_TIMEOUT * 3 + 5,
            what="the stalled response to be dropped",
        )
        rss_after = process_rss_kib(pid)

        # Reading now gets what was already in the socket buffers, then the end: the
        # stream was cut, not merely paused (a paused one would now deliver `done`).
        data, eof = read_all(sock, timeout=10)
    finally:
        sock.close()
    assert eof
    events = parse_sse_body(200, headers, _dechunk_prefix(data)).events
    assert events and events[0].type == "start"
    assert all(e.type in ("start", "content") for e in events)
    assert_ids_increase([e.id for e in events])
    received = "".join(e.data["content"] for e in events if e.type == "content")
    assert 0 < len(received) < len(BULK_TEXT) and BULK_TEXT.startswith(received)

    # A sanity bound, generous: the log keeps one copy of the reply, saving and encoding
    # make passing ones (about 5 copies measured); nothing may grow with time or readers.
    grown = (rss_after - rss_before) * 1024
    assert grown < 16 * len(BULK_TEXT), f"RSS grew {grown / 1e6:.0f} MB"

    # The stored answer is whole for the reader that comes back.
    again = stalled.resume(message_id, events[-1].id)
    assert received + again.text == BULK_TEXT


def _dechunk_prefix(data: bytes) -> bytes:
    """Undo HTTP/1.1 chunked framing of a body that may stop mid-chunk."""
    out = bytearray()
    rest = data
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    # Drop a trailing partial event: only complete events count.
    text = bytes(out)
    return text[: text.rfind(b"\n\n") + 2] if b"\n\n" in text else b""

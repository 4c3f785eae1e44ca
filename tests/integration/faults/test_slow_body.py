"""Issue 8 item 6 (and the chunked-body gap of item 9): clients that send headers and then
trickle, stall or drop the body hold nothing for long. The stream service authenticates
from the headers before reading the body, bounds the body read in time (408), caps the
requests in progress (503 `server_busy`, health still answered), and logs a client that
went away as one INFO line. A chunked body is read on both services."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.support.fake_upstream import directive, expected_text
from tests.support.sse import parse_sse_body

from .conftest import PROFILES
from .helpers import raw_request, read_body, read_head, wait_until

pytestmark = pytest.mark.integration

STACK_PROFILE = "slow_body"
BODY_TIMEOUT = float(PROFILES["slow_body"]["REQUEST_BODY_TIMEOUT_SECONDS"])
MAX_CONNECTIONS = int(PROFILES["slow_body"]["STREAM_MAX_CONNECTIONS"])


def stalled_post(stack, token: str | None, sent: bytes = b'{"mess'):
    """A POST whose head promises 200 body bytes, of which only `sent` ever arrive."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        "POST /api/ai/chat/stream/ HTTP/1.1\r\n"
        f"Host: localhost:{stack.stream_port}\r\n"
        f"{auth}"
        f"Origin: {stack.app_url}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 200\r\n\r\n"
    )
    return raw_request(stack.stream_port, head, sent)


def answer_of(sock) -> tuple[int, list[tuple[str, str]]]:
    status, headers, rest = read_head(sock, timeout=BODY_TIMEOUT + 5)
    body = read_body(sock, headers, rest)
    events = parse_sse_body(status, httpx.Headers(headers), body).events
    return status, [(e.type, e.data["code"]) for e in events]


def test_unauthenticated_client_is_refused_before_its_body(stack):
    sock = stalled_post(stack, token=None)
    try:
        began = time.monotonic()
        status, events = answer_of(sock)
        # Answered from the headers, long before the body timeout could have fired.
        assert (status, events) == (401, [("error", "unauthenticated")])
        assert time.monotonic() - began < BODY_TIMEOUT
    finally:
        sock.close()


def test_a_stalled_body_gets_408_and_stores_nothing(stack, make_user):
    user = make_user()
    sock = stalled_post(stack, user.token)
    try:
        status, events = answer_of(sock)
        assert (status, events) == (408, [("error", "request_timeout")])
    finally:
        sock.close()
    assert user.message_count() == 0


def test_connections_are_capped_with_a_clear_503(stack, make_user):
    user = make_user()
    holders = [stalled_post(stack, user.token) for _ in range(MAX_CONNECTIONS)]
    try:
        # Every slot is held by a stalled body (until the body timeout frees it).
        time.sleep(0.3)
        with httpx.Client(timeout=5) as http:
            busy = http.post(
                f"{stack.stream_url}/api/ai/chat/stream/",
                content=json.dumps({"message": "hi"}),
                headers={"Authorization": f"Bearer {user.token}"},
            )
            health = http.get(f"{stack.stream_url}/health/")
        result = parse_sse_body(busy.status_code, busy.headers, busy.content)
        assert result.status == 503
        assert [(e.type, e.data["code"]) for e in result.events] == [("error", "server_busy")]
        assert busy.headers["retry-after"]
        assert health.status_code == 200
        for sock in holders:
            assert answer_of(sock)[0] == 408
    finally:
        for sock in holders:
            sock.close()
    # The slots are free again.
    message = "after " + directive(tokens=2)
    assert user.post_stream({"message": message}).text == expected_text(message)


def test_a_client_that_goes_away_is_one_info_line(stack, make_user):
    user = make_user()
    before = stack.stream.log_text()
    sock = stalled_post(stack, user.token)
    time.sleep(0.3)  # the server is now waiting for the rest of the body
    sock.close()
    wait_until(
        lambda: "client went away" in stack.stream.log_text()[len(before) :],
        timeout=BODY_TIMEOUT + 5,
        what="the log line",
    )
    time.sleep(0.2)
    new = stack.stream.log_text()[len(before) :]
    lines = [line for line in new.splitlines() if "client went away" in line]
    assert len(lines) == 1 and " INFO " in lines[0], new
    assert "Traceback" not in new and " ERROR " not in new, new
    assert user.message_count() == 0


@pytest.mark.parametrize("via", ["stream", "app"])
def test_a_chunked_body_is_read(stack, make_user, via):
    user = make_user()
    message = f"chunked ({via}) " + directive(tokens=3)
    body = json.dumps({"message": message}).encode()
    headers = user.headers_for(via, {"Content-Type": "application/json"})
    with user.http_for(via, 30) as http:
        # A generator body has no length: httpx sends it with Transfer-Encoding: chunked.
        response = http.post(
            f"{user.base_url(via)}/api/ai/chat/stream/",
            content=iter([body[:10], body[10:]]),
            headers=headers,
        )
    result = parse_sse_body(response.status_code, response.headers, response.content)
    assert result.status == 200, result.events
    assert result.final.type == "done"
    assert result.text == expected_text(message)

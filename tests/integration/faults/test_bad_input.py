"""Issue item 8: bad input gets an exact answer before anything streams or is stored, on
the stream service and on c3-app's fallback alike: the status, a body of exactly one
`error` event with a stable code, and no new message in the history."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.support.fake_upstream import directive, expected_text
from tests.support.sse import parse_sse_body

from .conftest import PROFILES
from .helpers import LEAK_MARKERS, raw_request, read_body, read_head

pytestmark = pytest.mark.integration

VIAS = ["stream", "app"]
MAX_CHARS = int(PROFILES["faults"]["CHAT_MAX_MESSAGE_CHARS"])
MAX_BODY = 1024 * 1024  # CHAT_MAX_BODY_BYTES, the default

INVALID = {
    "not-json": b"{not json",
    "empty-body": b"",
    "not-an-object": b'["hello"]',
    "bad-utf8": b'{"message": "\xff\xfe"}',
    "missing-message": {},
    "message-number": {"message": 5},
    "message-null": {"message": None},
    "message-list": {"message": ["hello"]},
    "blank-message": {"message": " \n\t\u3000 "},
    "too-long": {"message": "x" * (MAX_CHARS + 1)},
    "nul-character": {"message": "a\u0000b"},
    "include-history-not-bool": {"message": "hi", "include_history": "yes"},
    "conversation-id-not-string": {"message": "hi", "conversation_id": 12},
    "model-not-offered": {"message": "hi", "model": "other"},
    "model-not-string": {"message": "hi", "model": 5},
    "language-unknown": {"message": "hi", "language": "fr"},
    "new-conversation-not-bool": {"message": "hi", "new_conversation": "yes"},
    "regenerate-and-edit": {
        "message": "hi",
        "regenerate_message_id": str(uuid.uuid4()),
        "edit_message_id": str(uuid.uuid4()),
    },
    "edit-without-message": {"edit_message_id": str(uuid.uuid4())},
}


def assert_one_error(result, status: int, code: str) -> None:
    assert result.status == status
    assert result.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert result.headers["cache-control"] == "no-cache, no-transform"
    assert [(e.type, e.data["code"]) for e in result.events] == [("error", code)]
    content = result.events[0].data["content"]
    assert isinstance(content, str) and content
    for marker in LEAK_MARKERS:
        assert marker not in content


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_request(stack, make_user, via, case):
    user = make_user()
    result = user.post_whole(INVALID[case], via=via)
    assert_one_error(result, 400, "invalid_request")
    assert user.message_count() == 0


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("case", ["malformed", "unknown", "foreign"])
def test_conversation_not_found(stack, make_user, via, case):
    user, other = make_user(), make_user()
    mine = user.client.api("POST", "/api/ai/conversations/", json={"title": "mine"})
    assert mine.status_code == 201
    theirs = other.client.api("POST", "/api/ai/conversations/", json={"title": "theirs"})
    conversation_id = {
        "malformed": "not-a-uuid",
        "unknown": str(uuid.uuid4()),
        "foreign": theirs.json()["id"],
    }[case]

    result = user.post_whole({"message": "hi", "conversation_id": conversation_id}, via=via)

    assert_one_error(result, 404, "not_found")
    assert user.message_count() == 0
    assert len(other.history(theirs.json()["id"])) == 0


@pytest.mark.parametrize("via", VIAS)
def test_unknown_fields_are_ignored_and_the_longest_message_is_accepted(stack, make_user, via):
    user = make_user()
    tail = " " + directive(tokens=3)
    message = "y" * (MAX_CHARS - len(tail)) + tail
    assert len(message) == MAX_CHARS
    body = {"message": message, "temperature": 2, "extra": {"a": [1]}}

    result = user.post_whole(body, via=via)

    assert result.status == 200
    assert result.types[0] == "start" and result.final.type == "done"
    assert result.text == expected_text(message)
    history = user.history(result.conversation_id)
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", message),
        ("assistant", expected_text(message)),
    ]


@pytest.mark.parametrize("via", VIAS)
def test_unauthenticated(stack, make_user, via):
    user = make_user()
    result = user.post_whole({"message": "hi"}, via=via, authenticated=False)
    assert_one_error(result, 401, "unauthenticated")
    assert user.message_count() == 0


def _head(stack, user, via: str, extra: str) -> str:
    if via == "stream":
        host, auth = f"localhost:{stack.stream_port}", f"Authorization: Bearer {user.token}\r\n"
    else:
        csrf = user.client.csrf_token
        session = user.client.http.cookies.get("sessionid")
        host = f"127.0.0.1:{stack.app_port}"
        auth = (
            f"Cookie: sessionid={session}; csrftoken={csrf}\r\n"
            f"X-CSRFToken: {csrf}\r\nReferer: {stack.app_url}/ai/chat/\r\n"
        )
    return (
        f"POST /api/ai/chat/stream/ HTTP/1.1\r\nHost: {host}\r\n{auth}"
        f"Origin: {stack.app_url}\r\nContent-Type: application/json\r\n{extra}\r\n"
    )


@pytest.mark.parametrize("via", VIAS)
def test_body_over_the_limit_is_refused_before_it_is_read(stack, make_user, via):
    user = make_user()
    port = stack.stream_port if via == "stream" else stack.app_port
    head = _head(stack, user, via, f"Content-Length: {5 * MAX_BODY}\r\n")
    began = time.monotonic()
    # A few bytes of the five MiB promised: the answer must not wait for the rest.
    sock = raw_request(port, head, b'{"message": "')
    try:
        status, headers, rest = read_head(sock, timeout=5)
        elapsed = time.monotonic() - began
        body = read_body(sock, headers, rest)
    finally:
        sock.close()
    assert status == 413
    assert elapsed < 2
    result = parse_sse_body(status, headers, body)
    assert [(e.type, e.data["code"]) for e in result.events] == [("error", "payload_too_large")]
    assert user.message_count() == 0


def test_chunked_body_over_the_limit_is_refused_once_the_limit_is_passed(stack, make_user):
    """No Content-Length to go by: the stream service counts what it reads."""
    user = make_user()
    head = _head(stack, user, "stream", "Transfer-Encoding: chunked\r\n")
    piece = b"x" * 65536
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sock = raw_request(stack.stream_port, head, b"")
    try:
        # Just over the limit, and then the body simply never ends.
        for _ in range(MAX_BODY // len(piece) + 2):
            sock.sendall(chunk)
        status, headers, rest = read_head(sock, timeout=5)
        body = read_body(sock, headers, rest)
    finally:
        sock.close()
    assert status == 413
    result = parse_sse_body(status, headers, body)
    assert [(e.type, e.data["code"]) for e in result.events] == [("error", "payload_too_large")]
    assert user.message_count() == 0


def test_error_bodies_are_identical_on_both_services(stack, make_user):
    """One encoder for both servers: byte for byte the same refusal."""
    user = make_user()
    bodies = {}
    for via in VIAS:
        with user.http_for(via, 10) as http:
            response = http.post(
                f"{user.base_url(via)}/api/ai/chat/stream/",
                content=json.dumps({"message": ""}).encode(),
                headers=user.headers_for(via, {"Content-Type": "application/json"}),
            )
        bodies[via] = (response.status_code, response.content)
    assert bodies["stream"] == bodies["app"]
    assert user.message_count() == 0

"""Both services on one host: the browser's own cookie jar reaches the stream service.

Cookies are not isolated by port, so c3-app on 127.0.0.1:A and c3-app-stream on
127.0.0.1:B share the session cookie exactly as two services under one parent domain do
with SESSION_COOKIE_DOMAIN. Here the client's cookie jar sends it by itself; the
cross-site token path is covered in test_auth.py (127.0.0.1 vs localhost).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chat_client import ChatClient
from tests.support.fake_upstream import directive, expected_text
from tests.support.servers import Stack, running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def same_host_stack(db_kind: str, module_tmp: Path) -> Iterator[Stack]:
    with running_stack(db_kind, module_tmp, stream_host="127.0.0.1") as stack:
        yield stack


@pytest.fixture
def same_host_client(same_host_stack: Stack) -> Iterator[ChatClient]:
    """A user logged in on the same-host stack."""
    same_host_stack.create_user("samehost", "pw-Secret-123")
    client = ChatClient(same_host_stack.app_url, same_host_stack.stream_url)
    client.login("samehost", "pw-Secret-123")
    yield client
    client.close()


def test_session_cookie_and_csrf_stream_without_a_token(same_host_client: ChatClient) -> None:
    message = "cookie path " + directive(tokens=5)
    result = same_host_client.stream({"message": message}, use_cookies=True)
    assert result.status == 200
    assert result.final.type == "done"
    assert result.text == expected_text(message)
    stored = same_host_client.history(result.first("start").data["conversation_id"])
    assert [m["content"] for m in stored] == [message, expected_text(message)]

    # The same cookie without Django's CSRF token is refused, and nothing is stored.
    refused = same_host_client.stream(
        {"message": "no csrf"}, use_cookies=True, headers={"X-CSRFToken": "wrong" * 8}
    )
    assert refused.status == 403
    assert [e.data["code"] for e in refused.events] == ["csrf_failed"]
    assert len(same_host_client.history(result.first("start").data["conversation_id"])) == 2

    # The resume endpoint takes the cookie too (EventSource sends it on the same site).
    resumed = same_host_client.resume(result.message_id, 0, cookies=True)
    assert resumed.text == expected_text(message)

    # After logout the cookie no longer opens a stream.
    same_host_client.logout()
    gone = same_host_client.stream({"message": "after logout"}, use_cookies=True)
    assert gone.status == 401
    assert [e.data["code"] for e in gone.events] == ["unauthenticated"]

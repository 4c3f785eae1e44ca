"""Who may stream, on the real servers (gunicorn + uvicorn, SQLite and PostgreSQL).

The stack serves c3-app on 127.0.0.1 and the stream service on localhost: two sites to a
browser, so the page's normal path to the stream service is the bearer token. The session
cookie path is tested by sending the cookie explicitly — a browser sends it only where
both services share a host or a parent domain (SESSION_COOKIE_DOMAIN).
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any

import cryptography.fernet
import httpx
import pytest
from cryptography.fernet import Fernet

from ai_features.auth.tokens import mint_stream_token
from tests.support.chat_client import ChatClient
from tests.support.fake_upstream import directive, expected_text
from tests.support.servers import Stack
from tests.support.sse import StreamResult, request_sse

pytestmark = pytest.mark.integration

MESSAGE = "hello " + directive(tokens=3)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_refused(result: StreamResult, status: int, code: str) -> None:
    """A refusal before streaming: its status and a body of exactly one error event."""
    assert result.status == status, result.events
    assert result.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert len(result.events) == 1, result.events
    event = result.events[0]
    assert event.type == "error" and event.data["code"] == code
    assert event.data["content"]  # a message for the user


def post_stream(stack: Stack, body: dict[str, Any], headers: dict[str, str]) -> StreamResult:
    """A POST to the stream service with exactly these headers (no client's own)."""
    return request_sse(
        "POST", f"{stack.stream_url}/api/ai/chat/stream/", json=body, headers=headers
    )


def session_cookie_header(client: ChatClient, *, with_csrf_cookie: bool = True) -> str:
    cookie = f"sessionid={client.http.cookies['sessionid']}"
    if with_csrf_cookie:
        cookie += f"; csrftoken={client.csrf_token}"
    return cookie


def user_pk(stack: Stack, username: str) -> str:
    code = (
        "from django.contrib.auth import get_user_model as g; "
        f"print(g().objects.get(username={username!r}).pk)"
    )
    # The last line: Django's shell may print a note about auto-imports first.
    return stack.manage("shell", "-c", code).stdout.strip().splitlines()[-1]


def mint_at(session_key: str, user_id: str, seconds_ago: float) -> str:
    """A stream token as c3-app would have minted it `seconds_ago` (same SECRET_KEY: the
    test process runs with tests/support/test_env.TEST_ENV, as the servers do)."""
    real_time = cryptography.fernet.time
    cryptography.fernet.time = SimpleNamespace(time=lambda: time.time() - seconds_ago)
    try:
        return mint_stream_token(session_key, user_id)
    finally:
        cryptography.fernet.time = real_time


# --- no or bad credentials -------------------------------------------------------------------


def test_stream_service_without_credentials_is_401(stack: Stack) -> None:
    result = post_stream(stack, {"message": MESSAGE}, {"Origin": stack.app_url})

    assert_refused(result, 401, "unauthenticated")
    assert result.headers["access-control-allow-origin"] == stack.app_url


def test_app_fallback_without_login_is_401(stack: Stack) -> None:
    with httpx.Client(base_url=stack.app_url, timeout=30) as anonymous:
        anonymous.get("/accounts/login/")  # an anonymous visitor gets a CSRF cookie
        csrf = anonymous.cookies["csrftoken"]
        headers = {"X-CSRFToken": csrf, "Referer": f"{stack.app_url}/ai/chat/"}
        result = request_sse(
            "POST",
            f"{stack.app_url}/api/ai/chat/stream/",
            json={"message": MESSAGE},
            headers=headers,
            cookies=anonymous.cookies,
        )
        # Without the CSRF token Django's own CSRF check answers first.
        refused = anonymous.post("/api/ai/chat/stream/", json={"message": MESSAGE})

    assert_refused(result, 401, "unauthenticated")
    assert refused.status_code == 403


def test_forged_tokens_are_401(stack: Stack, make_client: Any) -> None:
    client = make_client()
    real = client.token()
    payload = f'{{"s": "{client.http.cookies["sessionid"]}", "u": "1"}}'.encode()
    middle = len(real) // 2
    forged = {
        "other key": Fernet(Fernet.generate_key()).encrypt(payload).decode(),
        "tampered": real[:middle] + ("A" if real[middle] != "A" else "B") + real[middle + 1 :],
        "truncated": real[:-4],
        "garbage": "not-a-token",
        "empty": "",
    }

    for kind, token in forged.items():
        headers = {"Origin": stack.app_url, "Authorization": f"Bearer {token}".strip()}
        result = post_stream(stack, {"message": MESSAGE}, headers)
        assert result.status == 401, kind
        assert_refused(result, 401, "unauthenticated")

    assert client.history() == []
    # The real token of the same session works: the refusals were the tokens'.
    assert client.stream({"message": MESSAGE}, token=real).final.type == "done"


def test_expired_token_is_401(stack: Stack, make_client: Any) -> None:
    username = unique_name("expiry")
    client = make_client(username)
    session_key = client.http.cookies["sessionid"]
    pk = user_pk(stack, username)

    expired = mint_at(session_key, pk, seconds_ago=301)  # STREAM_TOKEN_MAX_AGE_SECONDS=300
    result = client.stream({"message": MESSAGE}, token=expired)

    assert_refused(result, 401, "unauthenticated")
    assert client.history() == []
    # Minted in this process just now, the same payload is accepted: the servers share the
    # key with this process, and it was the age that was refused.
    fresh = mint_at(session_key, pk, seconds_ago=0)
    ok = client.stream({"message": MESSAGE}, token=fresh)
    assert ok.status == 200 and ok.final.type == "done"
    assert [m["role"] for m in client.history()] == ["user", "assistant"]


def test_token_after_logout_is_401(stack: Stack, make_client: Any) -> None:
    client = make_client()
    token = client.token()
    assert client.stream({"message": MESSAGE}, token=token).final.type == "done"
    message_id = client.history()[-1]["id"]

    client.logout()

    assert_refused(client.stream({"message": MESSAGE}, token=token), 401, "unauthenticated")
    resumed = client.resume(message_id, 0, token=token)
    assert_refused(resumed, 401, "unauthenticated")
    assert client.http.get("/api/ai/chat/history/").status_code == 401


def test_token_after_password_change_is_401(stack: Stack, make_client: Any) -> None:
    username = unique_name("pwchange")
    client = make_client(username, "pw-Secret-123")
    token = client.token()
    first = client.stream({"message": MESSAGE}, token=token)
    assert first.final.type == "done"

    code = (
        "from django.contrib.auth import get_user_model as g; "
        f"u = g().objects.get(username={username!r}); "
        "u.set_password('a-New-password-456'); u.save()"
    )
    stack.manage("shell", "-c", code)

    assert_refused(client.stream({"message": MESSAGE}, token=token), 401, "unauthenticated")
    # The session itself is over too.
    assert client.http.get("/api/ai/chat/token/").status_code == 401
    # The new password works, and nothing was stored by the refused request.
    again = ChatClient(stack.app_url, stack.stream_url)
    try:
        again.login(username, "a-New-password-456")
        history = again.history(first.first("start").data["conversation_id"])
        assert [m["role"] for m in history] == ["user", "assistant"]
    finally:
        again.close()


# --- other users' data -----------------------------------------------------------------------


def test_another_users_conversation_is_404_and_nothing_is_stored(
    stack: Stack, make_client: Any
) -> None:
    owner, intruder = make_client(), make_client()
    first = owner.stream({"message": "owner's own " + directive(tokens=2)}, token=owner.token())
    conversation_id = first.first("start").data["conversation_id"]
    owner_history = owner.history(conversation_id)
    assert len(owner_history) == 2

    for via in ("stream", "app"):
        result = intruder.stream(
            {"message": "intruding " + directive(tokens=2), "conversation_id": conversation_id},
            via=via,
            token=intruder.token(),
        )
        assert result.status == 404, via
        assert_refused(result, 404, "not_found")

    assert owner.history(conversation_id) == owner_history
    assert intruder.history() == []
    assert intruder.conversations() == []
    # The intruder cannot read it either.
    response = intruder.http.get(
        "/api/ai/chat/history/", params={"conversation_id": conversation_id}
    )
    assert response.status_code == 404


# --- the session cookie on the stream service (same site / shared parent domain) -------------


def test_cookie_post_to_the_stream_service_needs_the_csrf_token(
    stack: Stack, make_client: Any
) -> None:
    client = make_client()
    client.http.get("/ai/chat/")  # the page sets the CSRF cookie, as for a browser

    without_header = post_stream(
        stack,
        {"message": MESSAGE},
        {"Origin": stack.app_url, "Cookie": session_cookie_header(client)},
    )
    wrong_header = post_stream(
        stack,
        {"message": MESSAGE},
        {
            "Origin": stack.app_url,
            "Cookie": session_cookie_header(client),
            "X-CSRFToken": "x" * 32,
        },
    )
    untrusted_origin = post_stream(
        stack,
        {"message": MESSAGE},
        {
            "Origin": "http://evil.example",
            "Cookie": session_cookie_header(client),
            "X-CSRFToken": client.csrf_token,
        },
    )

    for refused in (without_header, wrong_header, untrusted_origin):
        assert_refused(refused, 403, "csrf_failed")
    assert client.history() == []
    assert client.conversations() == []

    accepted = post_stream(
        stack,
        {"message": MESSAGE},
        {
            "Origin": stack.app_url,
            "Cookie": session_cookie_header(client),
            "X-CSRFToken": client.csrf_token,
        },
    )
    assert accepted.status == 200
    assert accepted.final.type == "done"
    assert accepted.text == expected_text(MESSAGE)
    history = client.history()
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", MESSAGE),
        ("assistant", expected_text(MESSAGE)),
    ]
    assert history[1]["id"] == accepted.message_id


def test_cookie_of_a_logged_out_session_is_401(stack: Stack, make_client: Any) -> None:
    client = make_client()
    client.http.get("/ai/chat/")
    cookie = session_cookie_header(client)
    csrf = client.csrf_token
    client.logout()

    result = post_stream(
        stack,
        {"message": MESSAGE},
        {"Origin": stack.app_url, "Cookie": cookie, "X-CSRFToken": csrf},
    )

    assert_refused(result, 401, "unauthenticated")


# --- the cross-site token flow and CORS ------------------------------------------------------


def test_cross_site_token_flow(stack: Stack, make_client: Any) -> None:
    client = make_client()
    page = client.http.get("/ai/chat/")
    assert page.status_code == 200
    token_response = client.http.get("/api/ai/chat/token/").json()
    assert token_response["stream_url"] == stack.stream_url
    assert token_response["expires_in"] == 300

    result = client.stream({"message": MESSAGE}, token=token_response["token"])

    assert result.status == 200
    assert result.headers["access-control-allow-origin"] == stack.app_url
    assert result.headers["access-control-allow-credentials"] == "true"
    assert result.final.type == "done"
    assert result.text == expected_text(MESSAGE)
    history = client.history()
    assert [(m["role"], m["status"]) for m in history] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert history[1]["content"] == expected_text(MESSAGE)


PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


@pytest.mark.parametrize("path", ["/api/ai/chat/stream/", "/api/ai/chat/stream/some-id/stop/"])
def test_preflight_from_the_app_origin_is_allowed_with_credentials(stack: Stack, path: str) -> None:
    response = httpx.options(
        f"{stack.stream_url}{path}", headers={"Origin": stack.app_url, **PREFLIGHT}
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == stack.app_url
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1"]
)
def test_unknown_origins_get_no_cors_headers(stack: Stack, origin: str) -> None:
    preflight = httpx.options(
        f"{stack.stream_url}/api/ai/chat/stream/", headers={"Origin": origin, **PREFLIGHT}
    )
    simple = httpx.post(
        f"{stack.stream_url}/api/ai/chat/stream/",
        json={"message": MESSAGE},
        headers={"Origin": origin},
    )

    for response in (preflight, simple):
        assert "access-control-allow-origin" not in response.headers
    assert preflight.status_code >= 400
    assert simple.status_code == 401


def test_cors_never_answers_with_a_wildcard(stack: Stack) -> None:
    for origin in (stack.app_url, "http://evil.example", "*"):
        for method, path in (("OPTIONS", "/api/ai/chat/stream/"), ("GET", "/health/")):
            response = httpx.request(
                method,
                f"{stack.stream_url}{path}",
                headers={"Origin": origin, **PREFLIGHT},
            )
            assert response.headers.get("access-control-allow-origin") != "*"


# --- Host header -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/ai/chat/stream/", "/api/ai/chat/stream/x/stop/"])
def test_stream_service_refuses_a_host_not_in_allowed_hosts(stack: Stack, path: str) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{stack.stream_port}{path}",
        json={"message": MESSAGE},
        headers={"Host": "evil.example", "Origin": stack.app_url},
    )

    assert response.status_code == 400
    # The same request with an allowed host gets as far as authentication.
    allowed = httpx.post(
        f"http://127.0.0.1:{stack.stream_port}{path}",
        json={"message": MESSAGE},
        headers={"Host": f"localhost:{stack.stream_port}", "Origin": stack.app_url},
    )
    assert allowed.status_code == 401


def test_health_answers_any_host(stack: Stack) -> None:
    # The platform's health checker may use an internal host name.
    response = httpx.get(
        f"http://127.0.0.1:{stack.stream_port}/health/", headers={"Host": "internal-name"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "service": "streaming",
        "database": "ok",
        "redis": "not_configured",
    }

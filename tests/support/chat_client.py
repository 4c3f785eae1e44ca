"""The one test client for the two real services: a browser-like user of c3-app (cookie
jar; logged in through the form or with a session made elsewhere) that takes stream
tokens and calls the stream endpoints of either service, reading answers with the one
SSE reader (tests/support/sse.py)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.sse import SSEEvent, StreamResult, parse_sse_body, request_sse

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
STREAM_PATH = "/api/ai/chat/stream/"


def json_body(body: dict[str, Any] | bytes) -> bytes:
    """A request body: a dict as JSON; bytes as they are (for malformed bodies)."""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def json_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A JSON body's Content-Type, with the caller's headers over it."""
    return {"Content-Type": "application/json", **(extra or {})}


class ChatClient:
    """One logged-in browser-like user of c3-app (cookie jar) plus the stream service.

    The stream endpoints are reached `via` the stream service ("stream", cross-site, with
    a bearer token like the page) or c3-app's fallback ("app", same-origin, with the
    session cookie and the CSRF header); each stream request opens a connection of its own.
    """

    def __init__(self, app_url: str, stream_url: str, timeout: float = 60) -> None:
        self.app_url, self.stream_url = app_url, stream_url
        self.http = httpx.Client(
            base_url=app_url,
            timeout=timeout,
            follow_redirects=False,
            # gunicorn closes idle keep-alive connections after 2 s; a client that reuses one
            # at that moment gets "Server disconnected". Expire ours first.
            limits=httpx.Limits(keepalive_expiry=1.0),
        )
        self.timeout = timeout

    def close(self) -> None:
        self.http.close()

    # -- the session -------------------------------------------------------------------------

    def login(self, username: str, password: str) -> None:
        page = self.http.get("/accounts/login/")
        csrf = CSRF_INPUT.search(page.text).group(1)
        response = self.http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": csrf},
            headers={"Referer": f"{self.app_url}/accounts/login/"},
        )
        assert response.status_code == 302, response.text[:500]
        assert response.headers["location"].endswith("/ai/chat/")

    def use_session(self, session_key: str, host: str) -> None:
        """Carry a session made elsewhere (Django's force_login), with no form to load."""
        self.http.cookies.set("sessionid", session_key, domain=host)
        # A CSRF secret is any 32 letters and digits; Django accepts the same value back in
        # X-CSRFToken. (Made here so no test depends on a page that renders a form.)
        self.http.cookies.set("csrftoken", secrets.token_hex(16), domain=host)

    def logout(self) -> None:
        self.http.get("/ai/chat/")  # sets a fresh CSRF cookie
        response = self.http.post(
            "/accounts/logout/",
            headers={"X-CSRFToken": self.csrf_token, "Referer": f"{self.app_url}/ai/chat/"},
        )
        assert response.status_code == 302, response.status_code

    @property
    def csrf_token(self) -> str:
        return self.http.cookies.get("csrftoken", "")

    def token(self) -> str:
        response = self.http.get("/api/ai/chat/token/")
        assert response.status_code == 200, response.text
        return response.json()["token"]

    # -- c3-app's JSON API -------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-CSRFToken": self.csrf_token, "Referer": f"{self.app_url}/ai/chat/"}
        headers.update(kwargs.pop("headers", {}))
        return self.http.request(method, path, headers=headers, **kwargs)

    def history(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        params = {"conversation_id": conversation_id} if conversation_id else {}
        response = self.http.get("/api/ai/chat/history/", params=params)
        assert response.status_code == 200, response.text
        return response.json()["history"]

    def conversations(self) -> list[dict[str, Any]]:
        response = self.http.get("/api/ai/conversations/")
        assert response.status_code == 200, response.text
        return response.json()["conversations"]

    # -- the stream endpoints ----------------------------------------------------------------

    def base_url(self, via: str) -> str:
        return self.app_url if via == "app" else self.stream_url

    def headers_for(
        self,
        via: str,
        *,
        token: str | None = None,
        cookies: bool = False,
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """What the page sends: its Origin; the bearer `token` if given; and where the session
        cookie goes (the app, or `cookies` to the stream service) the CSRF header."""
        headers = {"Origin": self.app_url}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if via == "app" or cookies:
            headers["X-CSRFToken"] = self.csrf_token
            headers["Referer"] = f"{self.app_url}/ai/chat/"
        headers.update(extra or {})
        return headers

    def jar_for(self, via: str, *, cookies: bool = False) -> httpx.Cookies | None:
        """The session cookies go to the app, and to the stream service only if asked."""
        return self.http.cookies if via == "app" or cookies else None

    def http_for(self, via: str, timeout: float | None = None) -> httpx.Client:
        """A connection of its own for a hand-made request to `via`."""
        return httpx.Client(timeout=timeout or self.timeout, cookies=self.jar_for(via))

    def stream(
        self,
        body: dict[str, Any] | bytes,
        *,
        via: str = "stream",
        token: str | None = None,
        use_cookies: bool = False,
        headers: dict[str, str] | None = None,
        stop_after: int | None = None,
        on_event: Callable[[SSEEvent], None] | None = None,
        timeout: float | None = None,
    ) -> StreamResult:
        """POST a question and read the answer as it streams (`stop_after` events, then drop)."""
        return request_sse(
            "POST",
            f"{self.base_url(via)}{STREAM_PATH}",
            content=json_body(body),
            headers=self.headers_for(
                via, token=token, cookies=use_cookies, extra=json_headers(headers)
            ),
            cookies=self.jar_for(via, cookies=use_cookies),
            timeout=timeout or self.timeout,
            stop_after=stop_after,
            on_event=on_event,
        )

    def post_whole(
        self,
        body: dict[str, Any] | bytes,
        *,
        via: str = "stream",
        token: str | None = None,
        session: bool = True,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> StreamResult:
        """POST and read the whole body at once (for answers refused before streaming);
        without `session` the app gets the CSRF cookie but no session cookie."""
        content = json_body(body)
        send = self.headers_for(via, token=token, extra=json_headers(headers))
        jar = self.jar_for(via)
        if jar is not None and not session:
            jar = httpx.Cookies({"csrftoken": self.csrf_token})
        with httpx.Client(timeout=timeout or self.timeout, cookies=jar) as http:
            response = http.post(
                f"{self.base_url(via)}{STREAM_PATH}", content=content, headers=send
            )
        return parse_sse_body(response.status_code, response.headers, response.content)

    def resume(
        self,
        message_id: str,
        last_event_id: int | None = 0,
        *,
        via: str = "stream",
        token: str | None = None,
        query_token: bool = False,
        query: bool = False,
        cookies: bool = False,
        on_event: Callable[[SSEEvent], None] | None = None,
        timeout: float | None = None,
        max_seconds: float | None = None,
    ) -> StreamResult:
        """GET the resume endpoint: Last-Event-ID as a header, or ?last_event_id= (`query`),
        or neither (None); the token as a bearer, or ?token= (`query_token`)."""
        headers = self.headers_for(via, token=None if query_token else token, cookies=cookies)
        params: dict[str, str] = {}
        if token is not None and query_token:
            params["token"] = token
        if last_event_id is not None:
            if query:
                params["last_event_id"] = str(last_event_id)
            else:
                headers["Last-Event-ID"] = str(last_event_id)
        return request_sse(
            "GET",
            f"{self.base_url(via)}{STREAM_PATH}{message_id}/",
            headers=headers,
            params=params,
            cookies=self.jar_for(via, cookies=cookies),
            timeout=timeout or self.timeout,
            on_event=on_event,
            max_seconds=max_seconds,
        )

    def stop(
        self,
        message_id: str,
        *,
        token: str | None = None,
        via: str = "stream",
        timeout: float | None = None,
    ) -> httpx.Response:
        with self.http_for(via, timeout) as http:
            return http.post(
                f"{self.base_url(via)}{STREAM_PATH}{message_id}/stop/",
                headers=self.headers_for(via, token=token),
            )

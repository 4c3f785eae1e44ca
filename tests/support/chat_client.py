"""A test client for the two real services: logs in through the form, takes stream
tokens, and reads SSE responses line by line (pings and ids included)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


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
    status: int
    headers: httpx.Headers
    events: list[SSEEvent] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)
    retry: int | None = None
    started: float = 0.0

    @property
    def text(self) -> str:
        return answer_text(self.events)

    @property
    def final(self) -> SSEEvent:
        assert self.events and self.events[-1].type in ("done", "error"), self.events[-3:]
        return self.events[-1]

    def first(self, type_: str) -> SSEEvent:
        return next(e for e in self.events if e.type == type_)

    @property
    def message_id(self) -> str:
        return self.first("start").data["message_id"]


def read_sse(response: httpx.Response, *, stop_after: int | None = None) -> StreamResult:
    """Parse a (streaming) response; stop after `stop_after` events to simulate a drop."""
    result = StreamResult(response.status_code, response.headers, started=time.monotonic())
    event_id: int | None = None
    data_lines: list[str] = []
    for line in response.iter_lines():
        if line.startswith(":"):
            result.pings.append(time.monotonic())
        elif line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("retry:"):
            result.retry = int(line[6:].strip())
        elif line.startswith("data:"):
            data_lines.append(line[5:].strip())
        elif line == "" and data_lines:
            result.events.append(
                SSEEvent(event_id, json.loads("\n".join(data_lines)), time.monotonic())
            )
            data_lines, event_id = [], None
            if stop_after is not None and len(result.events) >= stop_after:
                break
            if result.events[-1].type in ("done", "error"):
                break
    return result


class ChatClient:
    """One logged-in browser-like user of c3-app (cookie jar) plus the stream service."""

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

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-CSRFToken": self.csrf_token, "Referer": f"{self.app_url}/ai/chat/"}
        headers.update(kwargs.pop("headers", {}))
        return self.http.request(method, path, headers=headers, **kwargs)

    def history(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        params = {"conversation_id": conversation_id} if conversation_id else {}
        response = self.http.get("/api/ai/chat/history/", params=params)
        assert response.status_code == 200, response.text
        return response.json()["history"]

    def stream(
        self,
        body: dict[str, Any] | bytes,
        *,
        via: str = "stream",
        token: str | None = None,
        use_cookies: bool = False,
        headers: dict[str, str] | None = None,
        stop_after: int | None = None,
        timeout: float | None = None,
    ) -> StreamResult:
        """POST to the streaming endpoint of `via` ("stream" service or "app" fallback).

        The stream service is called with the bearer token (cross-site, like the page);
        the app fallback with the session cookie and CSRF header (same-origin).
        """
        if via == "app":
            base, use_cookies = self.app_url, True
        else:
            base = self.stream_url
        send_headers = {"Content-Type": "application/json", "Origin": self.app_url}
        if token is not None:
            send_headers["Authorization"] = f"Bearer {token}"
        if use_cookies:
            send_headers["X-CSRFToken"] = self.csrf_token
            send_headers["Referer"] = f"{self.app_url}/ai/chat/"
        send_headers.update(headers or {})
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        cookies = self.http.cookies if use_cookies else None
        with (
            httpx.Client(timeout=timeout or self.timeout, cookies=cookies) as client,
            client.stream(
                "POST", f"{base}/api/ai/chat/stream/", content=content, headers=send_headers
            ) as response,
        ):
            return read_sse(response, stop_after=stop_after)

    def resume(
        self,
        message_id: str,
        last_event_id: int = 0,
        *,
        via: str = "stream",
        token: str | None = None,
        query_token: bool = False,
        cookies: bool = False,
        timeout: float | None = None,
    ) -> StreamResult:
        base = self.app_url if via == "app" else self.stream_url
        headers = {"Origin": self.app_url, "Last-Event-ID": str(last_event_id)}
        params = {}
        if token and query_token:
            params["token"] = token
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        jar = self.http.cookies if via == "app" or cookies else None
        with (
            httpx.Client(timeout=timeout or self.timeout, cookies=jar) as client,
            client.stream(
                "GET", f"{base}/api/ai/chat/stream/{message_id}/", headers=headers, params=params
            ) as response,
        ):
            return read_sse(response)

    def stop(self, message_id: str, *, token: str, via: str = "stream") -> httpx.Response:
        base = self.app_url if via == "app" else self.stream_url
        if via == "app":
            return self.api("POST", f"/api/ai/chat/stream/{message_id}/stop/")
        return httpx.post(
            f"{base}/api/ai/chat/stream/{message_id}/stop/",
            headers={"Authorization": f"Bearer {token}", "Origin": self.app_url},
            timeout=self.timeout,
        )

"""Helpers for the fault-injection suite: raw SSE reading with every line kept, polling
with deadlines, batch-created users, and reads of what the database holds."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from tests.support.chat_client import ChatClient, answer_text
from tests.support.servers import Stack

T = TypeVar("T")

# Anything from an exception, a URL, a key or a stack trace that must never reach a user.
LEAK_MARKERS = (
    "http://",
    "https://",
    "127.0.0.1",
    "localhost",
    "sk-test",
    "Traceback",
    "Error",
    "Exception",
    "fake upstream",
    "status=",
    "/v1",
)


def wait_until(
    predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll until predicate() is truthy; return its value or fail with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


# --- SSE ------------------------------------------------------------------------------------


@dataclass
class Event:
    id: int | None
    data: dict[str, Any]
    at: float

    @property
    def type(self) -> str:
        return self.data["type"]


@dataclass
class Sse:
    """Everything a client saw on one response, lines and timing included."""

    status: int
    headers: httpx.Headers
    started: float
    events: list[Event] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    # Events that carried a retry: field (by index into events).
    retry_on: list[int] = field(default_factory=list)

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
    def final(self) -> Event:
        assert self.events, "no events at all"
        assert self.events[-1].type in ("done", "error"), self.types[-5:]
        return self.events[-1]

    @property
    def start(self) -> Event:
        return next(e for e in self.events if e.type == "start")

    @property
    def message_id(self) -> str:
        return self.start.data["message_id"]

    @property
    def conversation_id(self) -> str:
        return self.start.data["conversation_id"]

    def ended_with_one_final(self) -> bool:
        return sum(t in ("done", "error") for t in self.types) == 1 and self.types[-1] in (
            "done",
            "error",
        )


class SseReader:
    """Incremental parser for SSE lines (shared by the httpx and raw-socket readers)."""

    def __init__(self, result: Sse) -> None:
        self.result = result
        self._id: int | None = None
        self._data: list[str] = []
        self._retry = False

    def feed(self, line: str) -> Event | None:
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
            event = Event(self._id, json.loads("\n".join(self._data)), time.monotonic())
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
    on_event: Callable[[Event], None] | None = None,
    max_seconds: float | None = None,
) -> Sse:
    """Read until the final event (or `stop_after` events, to simulate a client drop, or
    `max_seconds`, for a stream that might never end)."""
    result = Sse(response.status_code, response.headers, started=time.monotonic())
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
        if event.type in ("done", "error"):
            break
    return result


def parse_sse_body(status: int, headers: httpx.Headers, body: bytes) -> Sse:
    result = Sse(status, headers, started=time.monotonic())
    reader = SseReader(result)
    for line in [*body.decode().split("\n"), ""]:
        reader.feed(line.rstrip("\r"))
    return result


class User:
    """A user with a logged-in session, talking to both services."""

    def __init__(self, stack: Stack, username: str, session_key: str) -> None:
        self.stack = stack
        self.username = username
        self.client = ChatClient(stack.app_url, stack.stream_url, timeout=30)
        cookies = self.client.http.cookies
        cookies.set("sessionid", session_key, domain=stack.app_host)
        # A CSRF secret is any 32 letters and digits; Django accepts the same value back in
        # X-CSRFToken. (Made here so no test depends on a page that renders a form.)
        cookies.set("csrftoken", secrets.token_hex(16), domain=stack.app_host)
        # Also proves the session works.
        self._token: str | None = self.client.token()

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.client.token()
        return self._token

    def close(self) -> None:
        self.client.close()

    # -- the streaming API, returning `Sse` ------------------------------------------------

    def base_url(self, via: str) -> str:
        return self.stack.app_url if via == "app" else self.stack.stream_url

    def headers_for(self, via: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Origin": self.stack.app_url}
        if via == "app":
            headers["X-CSRFToken"] = self.client.csrf_token
            headers["Referer"] = f"{self.stack.app_url}/ai/chat/"
        else:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def http_for(self, via: str, timeout: float) -> httpx.Client:
        cookies = self.client.http.cookies if via == "app" else None
        return httpx.Client(timeout=timeout, cookies=cookies)

    def post_stream(
        self,
        body: dict[str, Any] | bytes,
        *,
        via: str = "stream",
        stop_after: int | None = None,
        on_event: Callable[[Event], None] | None = None,
        timeout: float = 30,
    ) -> Sse:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = self.headers_for(via, {"Content-Type": "application/json"})
        with (
            self.http_for(via, timeout) as http,
            http.stream(
                "POST",
                f"{self.base_url(via)}/api/ai/chat/stream/",
                content=content,
                headers=headers,
            ) as response,
        ):
            return read_sse(response, stop_after=stop_after, on_event=on_event)

    def post_whole(
        self,
        body: dict[str, Any] | bytes,
        *,
        via: str = "stream",
        headers: dict[str, str] | None = None,
        authenticated: bool = True,
    ) -> Sse:
        """POST and read the whole body (for answers refused before streaming)."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        send = self.headers_for(via, {"Content-Type": "application/json", **(headers or {})})
        if not authenticated:
            send.pop("Authorization", None)
        http = (
            self.http_for(via, 30)
            if authenticated or via == "stream"
            else httpx.Client(timeout=30, cookies={"csrftoken": self.client.csrf_token})
        )
        with http:
            response = http.post(
                f"{self.base_url(via)}/api/ai/chat/stream/", content=content, headers=send
            )
        return parse_sse_body(response.status_code, response.headers, response.content)

    def resume(
        self,
        message_id: str,
        last_event_id: int | None = None,
        *,
        via: str = "stream",
        query: bool = False,
        query_token: bool = False,
        token: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        timeout: float = 30,
        max_seconds: float | None = None,
    ) -> Sse:
        """GET the resume endpoint; Last-Event-ID as a header, or ?last_event_id= (query)."""
        headers = self.headers_for(via)
        params: dict[str, str] = {}
        if last_event_id is not None:
            if query:
                params["last_event_id"] = str(last_event_id)
            else:
                headers["Last-Event-ID"] = str(last_event_id)
        if via == "stream":
            bearer = token or self.token
            if query_token:
                headers.pop("Authorization")
                params["token"] = bearer
            else:
                headers["Authorization"] = f"Bearer {bearer}"
        with (
            self.http_for(via, timeout) as http,
            http.stream(
                "GET",
                f"{self.base_url(via)}/api/ai/chat/stream/{message_id}/",
                headers=headers,
                params=params,
            ) as response,
        ):
            return read_sse(response, on_event=on_event, max_seconds=max_seconds)

    def stop(self, message_id: str, *, via: str = "stream") -> httpx.Response:
        with self.http_for(via, 10) as http:
            return http.post(
                f"{self.base_url(via)}/api/ai/chat/stream/{message_id}/stop/",
                headers=self.headers_for(via),
            )

    # -- what is stored ----------------------------------------------------------------------

    def history(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        return self.client.history(conversation_id)

    def conversations(self) -> list[dict[str, Any]]:
        response = self.client.http.get("/api/ai/conversations/")
        assert response.status_code == 200, response.text
        return response.json()["conversations"]

    def message_count(self) -> int:
        """Every message the user has, across all conversations."""
        return sum(len(self.history(c["id"])) for c in self.conversations())

    def stored(self, conversation_id: str, message_id: str) -> dict[str, Any]:
        for message in self.history(conversation_id):
            if message["id"] == message_id:
                return message
        raise AssertionError(f"message {message_id} not in the history")

    def wait_stored(
        self, conversation_id: str, message_id: str, *, timeout: float = 15, interval: float = 0.05
    ) -> dict[str, Any]:
        """The stored message once it is no longer `streaming`."""

        def settled() -> dict[str, Any] | None:
            message = self.stored(conversation_id, message_id)
            return message if message["status"] != "streaming" else None

        return wait_until(
            settled, timeout=timeout, interval=interval, what=f"message {message_id} to settle"
        )


class UserFactory:
    """Users made in batches (one `manage.py shell` for many), each with a session made by
    Django's own login (`force_login`), so tests do not pay for password hashing."""

    BATCH = 16
    _script = (
        "import json\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.test import Client\n"
        "out = {}\n"
        "for name in NAMES:\n"
        "    user = get_user_model().objects.create_user(name)\n"
        "    client = Client()\n"
        "    client.force_login(user)\n"
        "    out[name] = client.cookies['sessionid'].value\n"
        "print('USERS=' + json.dumps(out))\n"
    )

    def __init__(self, stack: Stack, prefix: str) -> None:
        self.stack = stack
        self.prefix = prefix
        self._counter = 0
        self._ready: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _batch(self) -> None:
        names = [f"{self.prefix}{self._counter + i}" for i in range(self.BATCH)]
        self._counter += self.BATCH
        done = self.stack.manage("shell", "-c", f"NAMES = {names!r}\n" + self._script)
        line = next(x for x in done.stdout.splitlines() if x.startswith("USERS="))
        self._ready.extend(json.loads(line[len("USERS=") :]).items())

    def take(self) -> tuple[str, str]:
        with self._lock:
            if not self._ready:
                self._batch()
            return self._ready.pop(0)


# --- the database directly (no API, so no stale sweep runs on the way) ----------------------


def db_messages(stack: Stack, *message_ids: str) -> tuple[dict[str, dict[str, Any]], int]:
    """The rows of these messages, and how many messages of anyone's are `streaming`."""
    code = (
        "import json\n"
        "from ai_features.models import Message\n"
        f"rows = Message.objects.filter(pk__in={list(message_ids)!r})\n"
        "print('ROWS=' + json.dumps({str(m.pk): {'status': m.status, 'content': m.content,"
        " 'error_code': m.error_code, 'finish_reason': m.finish_reason} for m in rows}))\n"
        "print('STREAMING=%d' % Message.objects.filter(status='streaming').count())\n"
    )
    out = stack.manage("shell", "-c", code).stdout.splitlines()
    rows = next(x for x in out if x.startswith("ROWS="))[len("ROWS=") :]
    streaming = next(x for x in out if x.startswith("STREAMING="))[len("STREAMING=") :]
    return json.loads(rows), int(streaming)


# --- raw sockets ------------------------------------------------------------------------------


def raw_request(port: int, head: str, body: bytes = b"", *, rcvbuf: int | None = None):
    """Open a socket to 127.0.0.1:port and send a request head plus (part of) a body."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connect, so that the advertised window stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(head.encode("latin-1") + body)
    return sock


def read_head(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Read just the response head; returns status, headers, and any body bytes after it."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError(f"connection closed before the response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, rest


def read_all(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Read until EOF or `timeout` of silence; returns the bytes and whether EOF came."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
    except TimeoutError:
        return b"".join(chunks), False
    except ConnectionResetError:
        return b"".join(chunks), True


def read_body(sock: socket.socket, headers: dict[str, str], rest: bytes) -> bytes:
    """Read a whole (Content-Length or chunked) response body that follows `rest`."""
    data = rest
    sock.settimeout(5)

    def more() -> None:
        nonlocal data
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-body: {data!r}")
        data += chunk

    if headers.get("transfer-encoding") != "chunked":
        length = int(headers["content-length"])
        while len(data) < length:
            more()
        return data[:length]
    body = bytearray()
    while True:
        while b"\r\n" not in data:
            more()
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        while len(data) < size + 2:
            more()
        body += data[:size]
        data = data[size + 2 :]


def process_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")

"""Helpers for the fault-injection suite: users on the one test client, polling with
deadlines, batch-created users, raw sockets, and reads of what the database holds."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from tests.support.chat_client import ChatClient
from tests.support.servers import Stack
from tests.support.sse import SSEEvent, StreamResult

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


def read_until_cut(
    user: User,
    body: dict[str, Any],
    seen: list[SSEEvent],
    *,
    via: str = "stream",
    timeout: float = 30,
) -> StreamResult | None:
    """Read a stream that the server may cut (SIGKILL): what arrived, or None once the
    connection broke (`seen` has every event either way)."""
    try:
        return user.post_stream(body, on_event=seen.append, via=via, timeout=timeout)
    except httpx.HTTPError:
        return None


def assert_replayed_as_interrupted(
    user: User, replay: StreamResult, conversation_id: str, message_id: str, full: str
) -> None:
    """A reader of an answer whose process was killed got the saved text and then the
    `interrupted` end, and the stored message says the same."""
    assert replay.types == ["start", "content", "error"], replay.types[-3:]
    assert replay.final.data["code"] == "interrupted"
    stored = user.stored(conversation_id, message_id)
    assert (stored["status"], stored["content"]) == ("interrupted", replay.text)
    assert replay.text and full.startswith(replay.text)


class User:
    """A user with a logged-in session, talking to both services through the one test
    client (`client`); stream requests carry the user's token where they go to the
    stream service."""

    def __init__(self, stack: Stack, username: str, session_key: str) -> None:
        self.stack = stack
        self.username = username
        self.client = ChatClient(stack.app_url, stack.stream_url, timeout=30)
        self.client.use_session(session_key, stack.app_host)
        # Also proves the session works.
        self._token: str | None = self.client.token()

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.client.token()
        return self._token

    def close(self) -> None:
        self.client.close()

    # -- the streaming API, returning `StreamResult` -----------------------------------------

    def bearer(self, via: str) -> str | None:
        return self.token if via == "stream" else None

    def base_url(self, via: str) -> str:
        return self.client.base_url(via)

    def headers_for(self, via: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        return self.client.headers_for(via, token=self.bearer(via), extra=extra)

    def http_for(self, via: str, timeout: float) -> httpx.Client:
        return self.client.http_for(via, timeout)

    def post_stream(
        self,
        body: dict[str, Any] | bytes,
        *,
        via: str = "stream",
        stop_after: int | None = None,
        on_event: Callable[[SSEEvent], None] | None = None,
        timeout: float = 30,
    ) -> StreamResult:
        return self.client.stream(
            body,
            via=via,
            token=self.bearer(via),
            stop_after=stop_after,
            on_event=on_event,
            timeout=timeout,
        )

    def post_whole(
        self,
        body: dict[str, Any] | bytes,
        *,
        via: str = "stream",
        headers: dict[str, str] | None = None,
        authenticated: bool = True,
    ) -> StreamResult:
        """POST and read the whole body (for answers refused before streaming)."""
        return self.client.post_whole(
            body,
            via=via,
            token=self.bearer(via) if authenticated else None,
            session=authenticated,
            headers=headers,
            timeout=30,
        )

    def resume(
        self,
        message_id: str,
        last_event_id: int | None = None,
        *,
        via: str = "stream",
        query: bool = False,
        query_token: bool = False,
        token: str | None = None,
        on_event: Callable[[SSEEvent], None] | None = None,
        timeout: float = 30,
        max_seconds: float | None = None,
    ) -> StreamResult:
        """GET the resume endpoint; Last-Event-ID as a header, or ?last_event_id= (query)."""
        return self.client.resume(
            message_id,
            last_event_id,
            via=via,
            token=(token or self.token) if via == "stream" else None,
            query=query,
            query_token=query_token,
            on_event=on_event,
            timeout=timeout,
            max_seconds=max_seconds,
        )

    def stop(self, message_id: str, *, via: str = "stream") -> httpx.Response:
        return self.client.stop(message_id, token=self.bearer(via), via=via, timeout=10)

    # -- what is stored ----------------------------------------------------------------------

    def history(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        return self.client.history(conversation_id)

    def conversations(self) -> list[dict[str, Any]]:
        return self.client.conversations()

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

"""A lean OpenAI-compatible fake upstream for the benchmark: plain stdlib asyncio, no framework.

python -m bench.upstream --port 9100

Only what a streaming relay needs: `POST /v1/chat/completions` with `"stream": true` answers
Server-Sent Events (chunked), one `chat.completion.chunk` JSON per token. The reply is chosen
by the same directive as the test suite's fake upstream (tests/support/fake_upstream.py), in
the last user message: ``[[fake tokens=100 pace=0.02 first_delay=0]]``. Token texts carry the
marker ``Zq`` (``"Zq0 "``, ``"Zq1 "``, ...) so the load client counts tokens in any framing.

`GET /_stats` returns this process's own CPU seconds (time.process_time) and the tokens it
produced, so a benchmark can state every other process's CPU per token as a multiple of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable

TOKEN_MARKER = "Zq"  # noqa: S105 - not a password, a marker in token texts
_DIRECTIVE_RE = re.compile(r"\[\[fake\b([^\]]*)\]\]")


class Stats:
    tokens = 0
    requests = 0


def parse_directive(text: str) -> tuple[int, float, float]:
    """(tokens, pace, first_delay) from the last ``[[fake ...]]`` in text."""
    values = {"tokens": "12", "pace": "0", "first_delay": "0"}
    for match in _DIRECTIVE_RE.finditer(text):
        for pair in match.group(1).split():
            key, _, value = pair.partition("=")
            if key in values:
                values[key] = value
    return int(values["tokens"]), float(values["pace"]), float(values["first_delay"])


def token_text(index: int) -> str:
    return f"{TOKEN_MARKER}{index} "


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


def simple_response(status: str, body: bytes, keep_alive: bool) -> bytes:
    connection = "keep-alive" if keep_alive else "close"
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    ).encode() + body


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def stream_completion(writer: asyncio.StreamWriter, request: dict, keep_alive: bool) -> None:
    messages = request.get("messages") or []
    last_user: dict = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    tokens, pace, first_delay = parse_directive(str(last_user.get("content", "")))
    connection = "keep-alive" if keep_alive else "close"
    writer.write(
        (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: {connection}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.get("model", "fake"),
    }
    if first_delay:
        await asyncio.sleep(first_delay)
    for index in range(tokens):
        if index and pace:
            await asyncio.sleep(pace)
        delta = {"content": token_text(index)}
        if index == 0:
            delta["role"] = "assistant"
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        writer.write(chunked(b"data: " + json.dumps(chunk).encode() + b"\n\n"))
        Stats.tokens += 1
        await writer.drain()
    tail = (
        b"data: "
        + json.dumps(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        ).encode()
        + b"\n\n"
    )
    if (request.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
        tail += b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
    tail += b"data: [DONE]\n\n"
    writer.write(chunked(tail) + b"0\r\n\r\n")
    await writer.drain()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                method, path, headers, body = await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            keep_alive = headers.get("connection", "").lower() != "close"
            Stats.requests += 1
            if method == "POST" and path.endswith("/chat/completions"):
                request = json.loads(body)
                if request.get("stream"):
                    await stream_completion(writer, request, keep_alive)
                else:  # e.g. a conversation title: one short answer in one piece
                    answer = {
                        "id": "chatcmpl-bench",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": request.get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "Bench"},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                    writer.write(simple_response("200 OK", json.dumps(answer).encode(), keep_alive))
            elif path == "/_stats":
                stats = {
                    "cpu_seconds": time.process_time(),
                    "tokens": Stats.tokens,
                    "requests": Stats.requests,
                }
                writer.write(simple_response("200 OK", json.dumps(stats).encode(), keep_alive))
            elif path in ("/health/", "/v1/models"):
                writer.write(simple_response("200 OK", b'{"status": "ok"}', keep_alive))
            else:
                writer.write(simple_response("404 Not Found", b"{}", keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except ConnectionError:
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def server_arguments(doc: str, port: int) -> argparse.ArgumentParser:
    """The command line of a bench server (this one and bench/relay.py): --host, --port."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    return parser


def serve(host: str, port: int, handler: Handler) -> None:
    """Serve connections with `handler` until interrupted (Ctrl-C)."""

    async def serve_forever() -> None:
        server = await asyncio.start_server(handler, host, port, backlog=4096)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever())


def main() -> None:
    args = server_arguments(__doc__, 9100).parse_args()
    serve(args.host, args.port, handle)


if __name__ == "__main__":
    main()

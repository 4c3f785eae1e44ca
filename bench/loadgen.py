"""A lean load client: raw asyncio sockets, one connection per stream, no HTTP library.

It sends one request per connection (``Connection: close``) and reads to EOF, so it needs no
chunked decoding: it only counts token markers (``Zq``, see bench.upstream) as bytes arrive,
which works for the upstream's chunks, the reference relay's and the stream service's events
alike, and costs a few microseconds per read. Run it on uvloop when installed, so the client
is never the bottleneck of what it measures.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from bench.upstream import TOKEN_MARKER

MARKER = TOKEN_MARKER.encode()
FINAL_MARKERS = (b'"type": "done"', b'"type":"done"', b"[DONE]")


@dataclass
class Target:
    """Where to send a stream request and how: path, extra headers, body builder."""

    name: str
    host: str
    port: int
    path: str
    # Stream i sends headers[i % len(headers)] (e.g. one user's credentials each).
    headers: list[dict[str, str]] = field(default_factory=lambda: [{}])
    kind: str = "app"  # "app": our streaming API; "openai": straight to the upstream

    def request(self, message: str, index: int = 0) -> bytes:
        if self.kind == "openai":
            payload = {
                "model": "fake",
                "stream": True,
                "messages": [{"role": "user", "content": message}],
            }
        else:
            payload = {"message": message, "include_history": False}
        body = json.dumps(payload).encode()
        head = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            "Accept: text/event-stream",
            "Connection: close",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in self.headers[index % len(self.headers)].items()),
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class StreamResult:
    status: int = 0
    sent_at: float = 0.0
    first_token_at: float | None = None
    # Arrival times of the reads that carried tokens (several tokens in one read count once).
    token_times: list[float] = field(default_factory=list)
    tokens: int = 0
    ended_at: float | None = None
    completed: bool = False
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.sent_at

    def gaps(self) -> list[float]:
        times = self.token_times
        return [b - a for a, b in zip(times, times[1:], strict=False)]


async def _one_stream(
    target: Target,
    message: str,
    index: int,
    result: StreamResult,
    go: asyncio.Event,
    connected: asyncio.Event,
) -> None:
    writer = None
    try:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        connected.set()
        await go.wait()
        request = target.request(message, index)
        result.sent_at = time.perf_counter()
        writer.write(request)
        tail = b""
        first = True
        while True:
            data = await reader.read(65536)
            if not data:
                break
            now = time.perf_counter()
            if first:
                first = False
                result.status = int(data[9:12]) if data.startswith(b"HTTP/1.") else -1
            count = (tail[-1:] + data).count(MARKER)
            if count:
                if result.first_token_at is None:
                    result.first_token_at = now
                result.token_times.append(now)
                result.tokens += count
            tail = (tail + data)[-1024:]
        result.ended_at = time.perf_counter()
        result.completed = result.status == 200 and any(m in tail for m in FINAL_MARKERS)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        result.error = type(exc).__name__
    finally:
        connected.set()
        if writer is not None:
            writer.close()


async def run_streams(
    target: Target,
    message: str,
    count: int,
    *,
    timeout: float,
    results: list[StreamResult] | None = None,
) -> list[StreamResult]:
    """`count` streams at once: open every connection, then send all requests together and
    read each to its end; streams still open after `timeout` seconds end as "timeout".

    Pass `results` (empty list) to watch the streams while they run."""
    results = [] if results is None else results
    results.extend(StreamResult() for _ in range(count))
    go = asyncio.Event()
    connected = [asyncio.Event() for _ in range(count)]
    tasks = [
        asyncio.create_task(_one_stream(target, message, index, result, go, event))
        for index, (result, event) in enumerate(zip(results[-count:], connected, strict=True))
    ]
    # The burst is the requests only: connections are opened (or failed) first.
    waiters = [asyncio.create_task(event.wait()) for event in connected]
    await asyncio.wait(waiters, timeout=min(timeout, 30))
    for waiter in waiters:
        waiter.cancel()
    go.set()
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for result in results:
        if result.ended_at is None and result.error is None:
            result.error = "timeout"
    return results


async def run_sequential(
    target: Target, message: str, count: int, *, timeout: float
) -> list[StreamResult]:
    """`count` streams one after another (each waits for the previous to end)."""
    results: list[StreamResult] = []
    for _ in range(count):
        await run_streams(target, message, 1, timeout=timeout, results=results)
    return results


def install_fast_loop() -> str:
    """uvloop for the client when available: it has to outrun what it measures."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"

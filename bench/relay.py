"""The reference relay: Python's floor for relaying a token stream, kept for comparison.

python -m bench.relay --port 9200 --upstream 127.0.0.1:9100

Plain stdlib asyncio. `POST /api/ai/chat/stream/` with ``{"message": ...}`` opens a
connection to the upstream, and for every upstream chunk does one JSON parse and one write
of a ``data: {"type": "content", ...}`` event; then one ``done`` event. No auth, no storage,
no event log, no SDK: whatever the stream service costs above this is the price of its
features and its stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from bench.upstream import chunked, read_request, serve, server_arguments, simple_response


async def relay(
    message: str, writer: asyncio.StreamWriter, upstream_host: str, upstream_port: int
) -> None:
    up_reader, up_writer = await asyncio.open_connection(upstream_host, upstream_port)
    try:
        body = json.dumps(
            {"model": "fake", "stream": True, "messages": [{"role": "user", "content": message}]}
        ).encode()
        up_writer.write(
            (
                "POST /v1/chat/completions HTTP/1.1\r\nHost: upstream\r\n"
                "Content-Type: application/json\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        await up_reader.readuntil(b"\r\n\r\n")  # the upstream's status line and headers
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        # The upstream sends whole events per HTTP chunk, so a line is never split: lines
        # that are not `data:` are chunk sizes and blank separators.
        async for line in up_reader:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = json.loads(line[6:])
            for choice in chunk["choices"][:1]:
                text = choice["delta"].get("content")
                if text:
                    event = json.dumps({"type": "content", "content": text}, ensure_ascii=False)
                    writer.write(chunked(b"data: " + event.encode() + b"\n\n"))
                    await writer.drain()
        writer.write(chunked(b'data: {"type": "done", "content": ""}\n\n') + b"0\r\n\r\n")
        await writer.drain()
    finally:
        up_writer.close()


async def handle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream_host: str,
    upstream_port: int,
) -> None:
    try:
        method, path, _headers, body = await read_request(reader)
        if method == "POST" and path == "/api/ai/chat/stream/":
            await relay(json.loads(body)["message"], writer, upstream_host, upstream_port)
        else:
            writer.write(simple_response("200 OK", b'{"status": "ok"}', keep_alive=False))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def main() -> None:
    parser = server_arguments(__doc__, 9200)
    parser.add_argument("--upstream", default="127.0.0.1:9100", help="host:port")
    args = parser.parse_args()
    upstream_host, _, upstream_port = args.upstream.rpartition(":")

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle(reader, writer, upstream_host, int(upstream_port))

    serve(args.host, args.port, on_connect)


if __name__ == "__main__":
    main()

"""The stream service's SSE response: a small ASGI response with per-response, not per-send,
bookkeeping.

sse-starlette's EventSourceResponse ran a task group per response (stream, ping, shutdown
watcher, disconnect listener) and an anyio cancel scope around every send for its send
timeout: about a fifth of the service's CPU at 100 streams (bench/README.md). The core
already sends its own pings (only while no event is due) and ends every stream with a final
event on shutdown, so this response needs just two things besides writing frames:

- noticing a client that went away, so its reader (and reader slot) is released at once:
  one task per response waits for `http.disconnect` (uvicorn's `send` to a closed
  connection returns silently, so writing alone would not tell);
- dropping a client that stopped reading (STREAM_SEND_TIMEOUT_SECONDS), so a stalled reader
  never holds memory for long: one timer per response looks at the send in progress, if
  any, at most once per timeout, instead of arming and cancelling a timeout per send.

The generation never depends on a response: it goes on whatever happens here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..chat import sse
from ..chat.events import ChatEvent, Ping

logger = logging.getLogger(__name__)


class EventStreamResponse(Response):
    media_type = sse.SSE_CONTENT_TYPE

    def __init__(
        self,
        events: AsyncIterator[ChatEvent | Ping],
        *,
        send_timeout: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.events = events
        self.send_timeout = send_timeout
        self.status_code = 200
        self.background = None
        self.init_headers({**sse.SSE_HEADERS, "Connection": "keep-alive", **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        ended_by: str | None = None  # "disconnect" or "timeout" once this response is cut
        finished = False
        sending_since: float | None = None  # loop time the send in progress began
        timer: asyncio.TimerHandle  # the next check_send, armed below (named here for nonlocal)

        def cut(reason: str) -> None:
            nonlocal ended_by
            if ended_by is None and not finished:
                ended_by = reason
                task.cancel()

        async def watch_disconnect() -> None:
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            except Exception:  # a server that fails `receive` has lost the client too
                logger.debug("receive failed while streaming", exc_info=True)
            cut("disconnect")

        def check_send() -> None:
            nonlocal timer
            since = sending_since
            now = loop.time()
            if since is not None and now - since >= self.send_timeout:
                cut("timeout")
                return
            # Next look: when the send in progress would time out, else one timeout from now
            # (a send that starts meanwhile is then looked at within one more timeout).
            due = since + self.send_timeout if since is not None else now + self.send_timeout
            timer = loop.call_at(due, check_send)

        watcher = loop.create_task(watch_disconnect())
        timer = loop.call_later(self.send_timeout, check_send)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            encode = sse.StreamEncoder()
            async for item in self.events:
                sending_since = loop.time()
                await send({"type": "http.response.body", "body": encode(item), "more_body": True})
                sending_since = None
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Ours (a disconnect or a stalled reader) ends the response quietly; any other
            # cancellation (the server shutting down) goes on up.
            if ended_by is None or task.uncancel() > 0:
                raise
            if ended_by == "timeout":
                logger.info("dropped a client that stopped reading (the generation goes on)")
        finally:
            finished = True
            timer.cancel()
            watcher.cancel()
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()

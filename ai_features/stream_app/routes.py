"""The stream service's HTTP routes: parse, authorise, call the core (chat/endpoint.py),
render the result as Starlette responses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.conf import settings
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .. import metrics
from ..auth.stream_auth import aauthenticate_stream
from ..chat import endpoint
from ..chat.db import db_task
from ..chat.errors import InvalidRequest, PayloadTooLarge, RequestTimeout
from ..chat.events import ChatEvent, Ping
from ..chat.service import ChatService
from ..chat.stream_params import last_event_id_from
from ..health import check_database, health_payload
from ..redis_client import aredis_health
from .sse_response import EventStreamResponse

router = APIRouter()
logger = logging.getLogger(__name__)


def render(reply: endpoint.Reply) -> Response:
    """A whole reply of the endpoint kit: a refusal, or the stop endpoint's answer."""
    return Response(
        reply.body,
        status_code=reply.status,
        media_type=reply.content_type,
        headers=reply.headers,
    )


def sse_response(events: AsyncIterator[ChatEvent | Ping]) -> EventStreamResponse:
    # The core sends its own pings (only while no event is due) and, on SIGTERM, ends every
    # stream itself (see ChatService._drain); uvicorn's --timeout-graceful-shutdown bounds
    # the rest. A reader that stops reading is dropped after the send timeout; the
    # generation goes on.
    return EventStreamResponse(events, send_timeout=settings.STREAM_SEND_TIMEOUT_SECONDS)


async def aread_body_limited(request: Request, limit: int, timeout: float) -> bytes:
    """Read the body, refusing one over `limit` bytes before reading it whole, or one that
    takes longer than `timeout` seconds to arrive (a client that trickles or stalls)."""
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLarge()
    except TimeoutError:
        raise RequestTimeout() from None
    except ClientDisconnect:
        # Its refusal is never sent (the connection is closed): only logged.
        logger.info("client went away before its request body arrived")
        raise InvalidRequest() from None
    return bytes(body)


def chat_service(request: Request) -> ChatService:
    return request.app.state.chat


@endpoint.refusals_as(endpoint.sse_refusal, render)
async def astream_chat(request: Request) -> Response:
    # Who, from the headers, before the body is read: an unauthenticated client never
    # gets to hold a connection open by trickling a body.
    limit = settings.CHAT_MAX_BODY_BYTES
    endpoint.refuse_declared_oversize(request.headers.get("content-length"), limit)
    user = await aauthenticate_stream(request.scope)
    body = await aread_body_limited(request, limit, settings.REQUEST_BODY_TIMEOUT_SECONDS)
    return sse_response(
        await endpoint.astart_stream(chat_service(request), user_id=user.pk, body=body)
    )


@endpoint.refusals_as(endpoint.sse_refusal, render)
async def aresume_chat(request: Request, message_id: str) -> Response:
    after_id = last_event_id_from(
        request.headers.get("last-event-id"), request.query_params.get("last_event_id")
    )
    user = await aauthenticate_stream(request.scope, allow_query_token=True)
    resume = endpoint.aresume_stream(
        chat_service(request), user_id=user.pk, message_id=message_id, after_id=after_id
    )
    return sse_response(await resume)


@endpoint.refusals_as(endpoint.json_refusal, render)
async def astop_chat(request: Request, message_id: str) -> Response:
    user = await aauthenticate_stream(request.scope)
    stop = endpoint.astop_stream(chat_service(request), user_id=user.pk, message_id=message_id)
    return render(await stop)


class _AsgiHandler:
    """A stream handler as a plain ASGI app, routed by a Starlette `Route`: the stream
    paths skip FastAPI's per-request machinery (dependency solving, its request and
    exception wrappers, one more wrapper around every `send` of every token), which they do
    not use: each handler parses, authorises and renders its own answers, refusals
    included (`refusals_as`)."""

    def __init__(self, handler: Callable[..., Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.handler(request, **request.path_params)
        await response(scope, receive, send)


router.routes += [
    Route("/api/ai/chat/stream/", _AsgiHandler(astream_chat), methods=["POST"]),
    Route("/api/ai/chat/stream/{message_id}/", _AsgiHandler(aresume_chat), methods=["GET"]),
    Route("/api/ai/chat/stream/{message_id}/stop/", _AsgiHandler(astop_chat), methods=["POST"]),
]


@router.get("/")
@router.get("/health/")
async def ahealth() -> dict[str, Any]:
    database = await db_task(check_database)()
    return health_payload(database, await aredis_health(), service="streaming")


@router.get("/metrics")
async def ametrics_endpoint(request: Request) -> Response:
    status = metrics.metrics_access(request.headers.get("authorization"))
    if status != 200:
        detail = "Not Found" if status == 404 else "Unauthorized"
        return JSONResponse({"detail": detail}, status_code=status)
    body, content_type = metrics.render_latest()
    return Response(body, media_type=content_type)

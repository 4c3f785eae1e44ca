"""The stream service's HTTP routes: parse, authorise, call the core, wrap as SSE."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from .. import metrics
from ..auth.stream_auth import aauthenticate_stream
from ..chat import sse
from ..chat.db import db_task
from ..chat.errors import ChatError, InternalError, PayloadTooLarge, RequestTimeout
from ..chat.events import ChatEvent, Ping
from ..chat.requests import parse_chat_request
from ..chat.service import ChatService
from ..chat.stream_params import last_event_id_from
from ..health import check_database, health_payload
from ..redis_client import aredis_health
from .sse_response import EventStreamResponse

router = APIRouter()
logger = logging.getLogger(__name__)


def error_response(error: ChatError) -> Response:
    headers = dict(sse.SSE_HEADERS)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return Response(
        sse.encode_error_body(error.event_data()),
        status_code=error.status,
        media_type=sse.SSE_CONTENT_TYPE,
        headers=headers,
    )


def sse_response(events: AsyncIterator[ChatEvent | Ping]) -> EventStreamResponse:
    # The core sends its own pings (only while no event is due) and, on SIGTERM, ends every
    # stream itself (see ChatService._drain); uvicorn's --timeout-graceful-shutdown bounds
    # the rest. A reader that stops reading is dropped after the send timeout; the
    # generation goes on.
    return EventStreamResponse(events, send_timeout=settings.STREAM_SEND_TIMEOUT_SECONDS)


def refuse_declared_oversize(request: Request, limit: int) -> None:
    """Refuse a body declared over `limit` bytes from the headers alone."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()


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
    return bytes(body)


def chat_service(request: Request) -> ChatService:
    return request.app.state.chat


@router.post("/api/ai/chat/stream/")
async def astream_chat(request: Request) -> Response:
    try:
        # Who, from the headers, before the body is read: an unauthenticated client never
        # gets to hold a connection open by trickling a body.
        refuse_declared_oversize(request, settings.CHAT_MAX_BODY_BYTES)
        user = await aauthenticate_stream(request.scope)
        try:
            body = await aread_body_limited(
                request, settings.CHAT_MAX_BODY_BYTES, settings.REQUEST_BODY_TIMEOUT_SECONDS
            )
        except ClientDisconnect:
            logger.info("client went away before its request body arrived")
            return Response(status_code=400)  # never sent: the connection is closed
        chat_request = parse_chat_request(body)
        service = chat_service(request)
        prepared = await service.astart(user.pk, request=chat_request)
    except ChatError as error:
        return error_response(error)
    except Exception:  # a database outage or a bug: logged, shown only as internal_error
        logger.exception("stream request failed")
        return error_response(InternalError())
    return sse_response(service.afollow(prepared.assistant_message_id))


@router.get("/api/ai/chat/stream/{message_id}/")
async def aresume_chat(request: Request, message_id: str) -> Response:
    try:
        after_id = last_event_id_from(
            request.headers.get("last-event-id"), request.query_params.get("last_event_id")
        )
        user = await aauthenticate_stream(request.scope, allow_query_token=True)
        events = await chat_service(request).aresume(
            user.pk, message_id=message_id, after_id=after_id
        )
    except ChatError as error:
        return error_response(error)
    except Exception:  # a database outage or a bug: logged, shown only as internal_error
        logger.exception("stream request failed")
        return error_response(InternalError())
    return sse_response(events)


@router.post("/api/ai/chat/stream/{message_id}/stop/")
async def astop_chat(request: Request, message_id: str) -> Response:
    try:
        user = await aauthenticate_stream(request.scope)
        snapshot = await chat_service(request).astop(user.pk, message_id=message_id)
    except ChatError as error:
        return JSONResponse(error.event_data(), status_code=error.status)
    except Exception:
        logger.exception("stop request failed")
        return JSONResponse(InternalError().event_data(), status_code=500)
    return JSONResponse({"message_id": snapshot.id, "status": snapshot.status})


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

"""c3-app's fallback copy of the streaming API, for deployments without STREAM_API_URL.

Same contract and same core as the stream service; authentication is Django's session and
CSRF middleware. Events reach the WSGI response through the core loop's sync bridge.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET, require_POST

from ..chat import sse
from ..chat.errors import (
    ChatError,
    InternalError,
    LengthRequired,
    PayloadTooLarge,
    Unauthenticated,
)
from ..chat.events import ChatEvent, Ping
from ..chat.requests import parse_chat_request
from ..chat.stream_params import last_event_id_from
from .bridge import core_loop

logger = logging.getLogger(__name__)


def error_response(error: ChatError) -> HttpResponse:
    response = HttpResponse(
        sse.encode_error_body(error.event_data()),
        status=error.status,
        content_type=sse.SSE_CONTENT_TYPE,
        headers=sse.SSE_HEADERS,
    )
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


def sse_response(events: AsyncIterator[ChatEvent | Ping]) -> StreamingHttpResponse:
    def encoded():
        encode = sse.StreamEncoder()
        for item in core_loop.iterate(events):
            yield encode(item)

    return StreamingHttpResponse(
        encoded(), content_type=sse.SSE_CONTENT_TYPE, headers=sse.SSE_HEADERS
    )


def read_body_limited(request: HttpRequest, limit: int) -> bytes:
    """Refuse a body over `limit` bytes before reading it whole.

    A chunked body (no Content-Length) is read too: Django sees it as empty, because it
    bounds wsgi.input by Content-Length, but gunicorn de-chunks wsgi.input itself.
    """
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()
    if not declared and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        stream = request.META.get("wsgi.input")
        if stream is None or not request.META.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
            # A server that does not de-chunk (runserver): say so instead of reading "".
            raise LengthRequired()
        body = stream.read(limit + 1)
    else:
        body = request.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge()
    return body


def _require_user(request: HttpRequest) -> None:
    if not request.user.is_authenticated:
        raise Unauthenticated()


@require_POST
def stream_chat(request: HttpRequest) -> HttpResponse:
    try:
        body = read_body_limited(request, settings.CHAT_MAX_BODY_BYTES)
        _require_user(request)
        chat_request = parse_chat_request(body)
        service = core_loop.service
        prepared = core_loop.run(service.astart(request.user.pk, request=chat_request))
    except ChatError as error:
        return error_response(error)
    except Exception:  # a database outage or a bug: logged, shown only as internal_error
        logger.exception("stream request failed")
        return error_response(InternalError())
    return sse_response(service.afollow(prepared.assistant_message_id))


@require_GET
def resume_chat(request: HttpRequest, message_id: str) -> HttpResponse:
    try:
        after_id = last_event_id_from(
            request.META.get("HTTP_LAST_EVENT_ID"), request.GET.get("last_event_id")
        )
        _require_user(request)
        events = core_loop.run(
            core_loop.service.aresume(request.user.pk, message_id=message_id, after_id=after_id)
        )
    except ChatError as error:
        return error_response(error)
    except Exception:  # a database outage or a bug: logged, shown only as internal_error
        logger.exception("stream request failed")
        return error_response(InternalError())
    return sse_response(events)


@require_POST
def stop_chat(request: HttpRequest, message_id: str) -> HttpResponse:
    try:
        _require_user(request)
        snapshot = core_loop.run(core_loop.service.astop(request.user.pk, message_id=message_id))
    except ChatError as error:
        return JsonResponse(error.event_data(), status=error.status)
    except Exception:
        logger.exception("stop request failed")
        return JsonResponse(InternalError().event_data(), status=500)
    return JsonResponse({"message_id": snapshot.id, "status": snapshot.status})

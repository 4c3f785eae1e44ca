"""c3-app's fallback copy of the streaming API, for deployments without STREAM_API_URL.

Same contract and same core as the stream service; authentication is Django's session and
CSRF middleware. The steps are chat/endpoint.py's, run on the core loop through its sync
bridge, which also carries the events to the WSGI response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET, require_POST

from ..chat import endpoint, sse
from ..chat.errors import LengthRequired, PayloadTooLarge, Unauthenticated
from ..chat.events import ChatEvent, Ping
from ..chat.stream_params import last_event_id_from
from .bridge import core_loop
from .replies import render


def sse_response(events: AsyncIterator[ChatEvent | Ping]) -> StreamingHttpResponse:
    def encoded() -> Iterator[bytes]:
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
    endpoint.refuse_declared_oversize(declared, limit)
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


def _user_id(request: HttpRequest) -> int:
    if not request.user.is_authenticated:
        raise Unauthenticated()
    return request.user.pk


@require_POST
@endpoint.refusals_as(endpoint.sse_refusal, render)
def stream_chat(request: HttpRequest) -> HttpResponseBase:
    body = read_body_limited(request, settings.CHAT_MAX_BODY_BYTES)
    user_id = _user_id(request)
    return sse_response(
        core_loop.run(endpoint.astart_stream(core_loop.service, user_id=user_id, body=body))
    )


@require_GET
@endpoint.refusals_as(endpoint.sse_refusal, render)
def resume_chat(request: HttpRequest, message_id: str) -> HttpResponseBase:
    after_id = last_event_id_from(
        request.META.get("HTTP_LAST_EVENT_ID"), request.GET.get("last_event_id")
    )
    user_id = _user_id(request)
    resume = endpoint.aresume_stream(
        core_loop.service, user_id=user_id, message_id=message_id, after_id=after_id
    )
    return sse_response(core_loop.run(resume))


@require_POST
@endpoint.refusals_as(endpoint.json_refusal, render)
def stop_chat(request: HttpRequest, message_id: str) -> HttpResponse:
    user_id = _user_id(request)
    stop = endpoint.astop_stream(core_loop.service, user_id=user_id, message_id=message_id)
    return render(core_loop.run(stop))

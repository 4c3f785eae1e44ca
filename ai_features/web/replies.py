"""c3-app's renderer of the endpoint kit's whole replies (chat/endpoint.py): the
refusals of the stream endpoints, the stop endpoint and the JSON API."""

from __future__ import annotations

from django.http import HttpResponse

from ..chat import endpoint
from ..chat.errors import ChatError


def render(reply: endpoint.Reply) -> HttpResponse:
    return HttpResponse(
        reply.body, status=reply.status, content_type=reply.content_type, headers=reply.headers
    )


def error_response(error: ChatError) -> HttpResponse:
    """A stream request refused before its stream began: one SSE `error` event."""
    return render(endpoint.sse_refusal(error))


def json_error(error: ChatError) -> HttpResponse:
    """The one JSON error shape: the JSON API's and the stop endpoint's."""
    return render(endpoint.json_refusal(error))

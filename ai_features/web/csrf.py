"""CSRF failures in the shape each endpoint promises (Django's HTML page elsewhere)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.csrf import csrf_failure as django_csrf_failure

from ..chat.errors import CsrfFailed

STREAM_PREFIX = "/api/ai/chat/stream/"
API_PREFIX = "/api/"
STOP_SUFFIX = "/stop/"


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    # Imported here: the views import the core, which settings must not load at startup.
    from .replies import error_response, json_error

    if request.path.startswith(STREAM_PREFIX) and not request.path.endswith(STOP_SUFFIX):
        return error_response(CsrfFailed())
    if request.path.startswith(API_PREFIX):  # the JSON API and the stop endpoint
        return json_error(CsrfFailed())
    return django_csrf_failure(request, reason=reason)

"""Request ids and health checks for c3-app (the stream service has its own twin)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from ..logging import new_request_id, request_id_var

access_logger = logging.getLogger("ai_features.web.access")
HEALTH_PATH = "/health/"


class RequestIdMiddleware:
    """First in the chain: tags every log line of the request with its id, answers the
    platform's health check before host validation and HTTPS redirects, and writes one
    access line per request (path only: never a query string, body or cookie)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = new_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            if request.path == HEALTH_PATH:
                response: HttpResponse = JsonResponse({"status": "ok"})
            else:
                response = self.get_response(request)
            response["X-Request-ID"] = request_id
            access_logger.info(
                "%s %s %s %.0fms",
                request.method,
                request.path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
            return response
        finally:
            request_id_var.reset(token)

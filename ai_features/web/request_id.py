"""Request ids, health checks and metrics for c3-app (the stream service has its own twin)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from .. import metrics
from ..health import check_database, health_payload
from ..logging import new_request_id, request_id_var
from ..redis_client import aredis_health, redis_configured

access_logger = logging.getLogger("ai_features.web.access")
HEALTH_PATH = "/health/"
METRICS_PATH = "/metrics"


def health_response() -> JsonResponse:
    redis = "not_configured"
    if redis_configured():
        # Through the core loop, whose Redis pool the fallback streams use.
        from .bridge import core_loop

        redis = core_loop.run(aredis_health())
    return JsonResponse(health_payload(check_database(), redis))


def metrics_response(request: HttpRequest) -> HttpResponse:
    status = metrics.metrics_access(request.headers.get("Authorization"))
    if status != 200:
        return JsonResponse(
            {"detail": "Not Found" if status == 404 else "Unauthorized"}, status=status
        )
    body, content_type = metrics.render_latest()
    return HttpResponse(body, content_type=content_type)


class RequestIdMiddleware:
    """First in the chain: tags every log line of the request with its id, answers the
    platform's health check and metrics scrapes (which may use an internal host name, over
    plain HTTP) before host validation and HTTPS redirects, and writes one
    access line per request (path only: never a query string, body or cookie)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = new_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            if request.path == HEALTH_PATH:
                response: HttpResponse = health_response()
            elif request.path == METRICS_PATH:
                response = metrics_response(request)
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

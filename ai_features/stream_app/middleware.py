"""Pure ASGI middleware for the stream service (pure ASGI so it never buffers a stream)."""

from __future__ import annotations

import io
import logging
import time

from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logging import new_request_id, request_id_var

access_logger = logging.getLogger("ai_features.stream.access")
# The platform's health checker and a metrics scraper may use an internal host name.
HOST_CHECK_EXEMPT = frozenset({"/", "/health/", "/metrics"})


class HostAndRequestIdMiddleware:
    """Tags the request with an id (X-Request-ID in and out), checks Host against
    ALLOWED_HOSTS the way Django does, and writes one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = new_request_id(headers.get(b"x-request-id", b"").decode("latin1"))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            if scope["path"] not in HOST_CHECK_EXEMPT:
                try:
                    ASGIRequest(scope, io.BytesIO()).get_host()
                except DisallowedHost:
                    response = JSONResponse({"detail": "Bad Request"}, status_code=400)
                    await response(scope, receive, send_with_id)
                    return
            await self.app(scope, receive, send_with_id)
        finally:
            # Path only, never the query string: resume URLs may carry a token.
            access_logger.info(
                "%s %s %s %.0fms",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )
            request_id_var.reset(token)

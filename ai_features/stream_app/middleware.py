"""Pure ASGI middleware for the stream service (pure ASGI so it never buffers a stream)."""

from __future__ import annotations

import io
import logging
import time

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..chat import endpoint
from ..chat.errors import ServerBusy
from ..logging import new_request_id, request_id_var
from .routes import render

access_logger = logging.getLogger("ai_features.stream.access")
# The platform's health checker and a metrics scraper may use an internal host name.
HOST_CHECK_EXEMPT = frozenset({"/", "/health/", "/metrics"})


def security_headers() -> list[tuple[bytes, bytes]]:
    """The headers Django's SecurityMiddleware gives c3-app's responses, from the same
    settings: HSTS (with DEBUG off) and nosniff."""
    headers: list[tuple[bytes, bytes]] = []
    if not settings.DEBUG and settings.SECURE_HSTS_SECONDS:
        value = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            value += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            value += "; preload"
        headers.append((b"strict-transport-security", value.encode()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    return headers


class HostAndRequestIdMiddleware:
    """Tags the request with an id (X-Request-ID in and out), checks Host against
    ALLOWED_HOSTS the way Django does, adds the security headers, and writes one access
    line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.security_headers = security_headers()

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
                message["headers"] = [
                    *message["headers"],
                    *self.security_headers,
                    (b"x-request-id", request_id.encode()),
                ]
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


class ConnectionLimitMiddleware:
    """At most `limit` requests in progress at once (open streams included); the next one
    gets a clear 503 `server_busy` at once instead of waiting in a queue. Health checks are
    always answered, so the platform does not restart a busy but healthy instance."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"] in HOST_CHECK_EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            response = render(endpoint.sse_refusal(ServerBusy(retry_after=5)))
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

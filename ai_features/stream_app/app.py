"""c3-app-stream: the FastAPI service that streams answers as Server-Sent Events.

The routes only parse, authorise, call the streaming core and wrap its events; the core
(ai_features.chat.service) is the same one Django's fallback endpoint runs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from django.conf import settings
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from ..chat import pg
from ..chat.service import ChatService
from .cors import allowed_origins
from .middleware import ConnectionLimitMiddleware, HostAndRequestIdMiddleware
from .routes import router

logger = logging.getLogger("ai_features.stream")


def _chain_sigterm(service: ChatService) -> None:
    """Start draining the moment SIGTERM arrives (Render sends it on every deploy).

    uvicorn only runs the lifespan shutdown after every open response has ended, which for
    long streams would be too late; so the handler uvicorn installed is wrapped, not
    replaced: it still stops the server from accepting connections.
    """
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame) -> None:
        loop.call_soon_threadsafe(service.begin_shutdown)
        if callable(previous):
            previous(signum, frame)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (e.g. some test runners): rely on lifespan
        logger.debug("SIGTERM hook not installed outside the main thread")


_startup_frozen = False


def freeze_startup_objects() -> None:
    """Move what start-up loaded (Django, the SDK, the app: ~200 000 objects) out of the
    cyclic garbage collector's sight, once per process. They live as long as the process,
    yet every full collection walked them all, stopping the event loop (and every stream's
    next token) for 100–400 ms at a time under load; frozen, a full collection walks only
    what was made since, and took about half as long in all (bench/README.md)."""
    global _startup_frozen
    if _startup_frozen:
        return
    gc.collect()  # start-up's own garbage is collected, not frozen
    gc.freeze()
    _startup_frozen = True


def set_switch_interval() -> None:
    """Let the database threads have the GIL back sooner (STREAM_SWITCH_INTERVAL_MS): each
    statement they send releases it, and getting it back waited for the event loop, busy
    relaying tokens, to reach Python's 5 ms switch interval: up to 5 ms per statement of a
    start, more than the statement itself (bench/README.md)."""
    sys.setswitchinterval(settings.STREAM_SWITCH_INTERVAL_MS / 1000)


def create_app(service: ChatService | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # This loop's PostgreSQL connections for a stream's own statements (chat/pg.py);
        # opened first, so that the recovery below already uses them.
        pg.open_pool()
        app.state.chat = service or ChatService()
        # Build the provider (and import the SDK) now, not on the first user's request.
        app.state.chat.provider_factory()
        repaired = await app.state.chat.arecover()
        if repaired:
            logger.info("marked %d stale streaming message(s) interrupted", repaired)
        _chain_sigterm(app.state.chat)
        freeze_startup_objects()
        set_switch_interval()
        if settings.STREAM_WORKERS > 1 and not settings.REDIS_URL:
            logger.warning(
                "STREAM_WORKERS=%d without REDIS_URL: each worker has its own event logs and "
                "limits (a resume on another worker falls back to the database)",
                settings.STREAM_WORKERS,
            )
        yield
        await app.state.chat.ashutdown()
        pg.close_pool()

    app = FastAPI(
        title="c3-app-stream",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(router)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=allowed_origins(),
        allow_credentials=True,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-CSRFToken", "Last-Event-ID"],
        expose_headers=["Retry-After", "X-Request-ID"],
        max_age=600,
    )
    app.add_middleware(ConnectionLimitMiddleware, limit=settings.STREAM_MAX_CONNECTIONS)
    # Outermost: every log line of a request, CORS preflights included, carries its id.
    app.add_middleware(HostAndRequestIdMiddleware)
    if settings.DEBUG:
        logger.info("CORS origins: %s", ", ".join(allowed_origins()) or "(none)")
    return app

"""The sync bridge that lets c3-app's WSGI fallback run the async streaming core.

Each gunicorn worker process gets one background thread with its own event loop, where the
core (ChatService) lives. A request thread submits coroutines to it and pulls events one
at a time, so the response really streams (Django would buffer an async iterator whole
under WSGI), and a generation keeps running on that loop when its client goes away.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from concurrent.futures import Future
from typing import TypeVar

from ..chat.service import ChatService
from ..logging import request_id_var

T = TypeVar("T")
logger = logging.getLogger(__name__)


class CoreLoop:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid: int | None = None
        self._service: ChatService | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked worker must not reuse its parent's (dead) thread.
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="c3-core-loop", daemon=True)
                thread.start()
                self._loop, self._pid = loop, os.getpid()
                self._service = ChatService()
                self._service.provider_factory()  # import the SDK before the first token
                # A restarted worker ends its previous incarnation's answers (in the
                # background: the request that got here need not wait for it).
                contextvars.Context().run(
                    asyncio.run_coroutine_threadsafe, _recover(self._service), loop
                )
            return self._loop

    @property
    def service(self) -> ChatService:
        self._ensure_loop()
        assert self._service is not None
        return self._service

    def submit(self, awaitable: Awaitable[T]) -> Future[T]:
        coroutine = _with_request_id(awaitable, request_id_var.get())
        loop = self._ensure_loop()
        # run_coroutine_threadsafe would copy this thread's context into the core loop's
        # tasks (asgiref's executor state included, which deadlocks under ASGI): start from
        # an empty context and carry only the request id over.
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coroutine, loop)

    def shutdown(self, timeout: float = 10.0) -> None:
        """At process exit: end what is still generating (stored `interrupted`) instead of
        leaving it `streaming` until the stale sweep."""
        if self._loop is None or self._pid != os.getpid() or self._service is None:
            return
        service = self._service
        service.shutdown_grace = 0
        # At exit nothing can be done about a failure any more, but it must show: an answer
        # left `streaming` here is ended later by the stale sweep, and the log says why.
        try:
            self.submit(service.ashutdown()).result(timeout)
        except TimeoutError:
            logger.warning(
                "core loop shutdown did not finish within %.0fs; answers still streaming are "
                "ended by the stale sweep",
                timeout,
            )
        except Exception:
            logger.exception("core loop shutdown failed")

    def begin_drain(self, grace: float) -> None:
        """On SIGTERM (gunicorn's graceful stop): refuse new streams and give running
        generations `grace` seconds before they end `interrupted`, so that every fallback
        stream gets its final event and its row is stored before the worker exits.
        Safe to call from a signal handler."""
        if self._loop is None or self._pid != os.getpid() or self._service is None:
            return
        service = self._service
        service.shutdown_grace = max(0.0, grace)
        self._loop.call_soon_threadsafe(service.begin_shutdown)

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.submit(awaitable).result()

    def iterate(self, events: AsyncIterator[T]) -> Iterator[T]:
        """Pull an async iterator from the request thread, one item per round trip.

        When the WSGI server closes this generator (client gone), only the reader is
        closed; the generation it was reading keeps going.
        """
        try:
            while True:
                try:
                    yield self.run(events.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                self.submit(aclose())


async def _recover(service: ChatService) -> None:
    try:
        repaired = await service.arecover()
    except Exception:
        logger.warning("could not repair answers left streaming", exc_info=True)
        return
    if repaired:
        logger.info("marked %d stale streaming message(s) interrupted", repaired)


async def _with_request_id(awaitable: Awaitable[T], request_id: str) -> T:
    # Tasks on the core loop get that thread's context, not the request's: carry the id
    # over so the generation's log lines name the request that started it.
    request_id_var.set(request_id)
    return await awaitable


core_loop = CoreLoop()
# gunicorn workers leave through sys.exit after their graceful timeout: atexit runs there.
atexit.register(core_loop.shutdown)

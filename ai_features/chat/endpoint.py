"""The streaming endpoints' steps, shared by both servers.

A handler of either server parses and authorises in its own framework (the stream
service's bearer token or cookie, c3-app's session), calls one coroutine here and renders
what it gets: an event stream, or a whole Reply (a refusal is a ChatError, which
`refusals_as` turns into a Reply). The FastAPI routes await these on the service's loop;
c3-app's WSGI fallback runs them on the core loop through its sync bridge (bridge.py).
Nothing here knows a framework, so both servers answer alike by construction.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import sse
from .errors import ChatError, InternalError, PayloadTooLarge
from .events import ChatEvent, Ping
from .requests import parse_chat_request
from .service import ChatService

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
Response = TypeVar("Response")
Handler = TypeVar("Handler", bound=Callable[..., Any])


# --- the steps ----------------------------------------------------------------------------


async def astart_stream(
    service: ChatService, *, user_id: int, body: bytes
) -> AsyncIterator[ChatEvent | Ping]:
    """POST /api/ai/chat/stream/: validate the body, store the question, launch the
    answer; its events from the start. Raises ChatError for anything refused first."""
    prepared = await service.astart(user_id, request=parse_chat_request(body))
    return service.afollow(prepared.assistant_message_id)


async def aresume_stream(
    service: ChatService, *, user_id: int, message_id: str, after_id: int
) -> AsyncIterator[ChatEvent | Ping]:
    """GET /api/ai/chat/stream/<message_id>/: the answer's events after `after_id`."""
    return await service.aresume(user_id, message_id=message_id, after_id=after_id)


async def astop_stream(service: ChatService, *, user_id: int, message_id: str) -> Reply:
    """POST /api/ai/chat/stream/<message_id>/stop/: `{"message_id", "status"}` as it
    stands after the stop."""
    snapshot = await service.astop(user_id, message_id=message_id)
    return json_reply({"message_id": snapshot.id, "status": snapshot.status})


def refuse_declared_oversize(declared: str | None, limit: int) -> None:
    """Refuse a body whose Content-Length says it is over `limit` bytes, before reading it."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()


# --- refusals -----------------------------------------------------------------------------


def refusal(exc: Exception) -> ChatError:
    """What a request that failed before its answer began gets: a ChatError as raised;
    anything else (a database outage, a bug) is logged with its traceback and shown only
    as internal_error."""
    if isinstance(exc, ChatError):
        return exc
    logger.error("stream request failed", exc_info=exc)
    return InternalError()


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole (not streamed) answer, which each server renders in its own response class."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def sse_refusal(error: ChatError) -> Reply:
    """A stream request refused before its stream began: its HTTP status and a body of one
    `error` event (the streaming contract), with Retry-After when the error has one."""
    headers = {**sse.SSE_HEADERS, **_retry_after(error)}
    body = sse.encode_error_body(error.event_data())
    return Reply(error.status, body, sse.SSE_CONTENT_TYPE, headers)


def json_error_data(error: ChatError) -> dict[str, Any]:
    """The one JSON error shape, `{"error": {"code", "message"}}` (README, API)."""
    return {"error": {"code": error.code, "message": error.message}}


def json_refusal(error: ChatError) -> Reply:
    """A JSON endpoint's refusal (the stop endpoint, c3-app's JSON API)."""
    return json_reply(json_error_data(error), error.status, _retry_after(error))


def json_reply(
    data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Reply:
    return Reply(status, sse.encode_data(data), JSON_CONTENT_TYPE, headers or {})


def _retry_after(error: ChatError) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}


def refusals_as(
    refuse: Callable[[ChatError], Reply], render: Callable[[Reply], Response]
) -> Callable[[Handler], Handler]:
    """A handler (sync or async) whose failures are answered as
    `render(refuse(refusal(exc)))`: `refuse` is sse_refusal or json_refusal, `render` the
    server's own.

    Only the handler's own steps are covered: a stream it returns runs later, inside the
    response, where the core ends it with an `error` event instead (see
    aended_by_a_final_event)."""

    def refused(exc: Exception) -> Response:
        return render(refuse(refusal(exc)))

    def decorate(handler: Handler) -> Handler:
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def aguarded(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await handler(*args, **kwargs)
                except Exception as exc:
                    return refused(exc)

            return aguarded  # type: ignore[return-value]

        @functools.wraps(handler)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except Exception as exc:
                return refused(exc)

        return guarded  # type: ignore[return-value]

    return decorate

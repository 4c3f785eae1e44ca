"""The endpoint kit both servers call (chat/endpoint.py): the steps on a real database
(SQLite and PostgreSQL, see `unit_database` in tests/ai_features/conftest.py) with the
offline demo model, and the refusals each server renders (no database)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ai_features.chat import endpoint
from ai_features.chat.errors import (
    ChatError,
    InternalError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
)
from ai_features.chat.events import ChatEvent, Ping
from ai_features.chat.limits import RateLimit
from ai_features.chat.service import ChatService
from ai_features.providers.demo import DemoProvider


def make_service() -> ChatService:
    return ChatService(
        provider_factory=lambda: DemoProvider(pace=0), rate_limit=RateLimit(0), max_concurrent=0
    )


async def events_of(events: AsyncIterator[ChatEvent | Ping]) -> list[ChatEvent]:
    async with asyncio.timeout(15):
        return [item async for item in events if isinstance(item, ChatEvent)]


# --- the steps (on SQLite and PostgreSQL: unit_database takes `db_kind`) -------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("unit_database")
async def test_start_parses_the_body_and_streams_the_answer_to_its_end(alice: Any) -> None:
    service = make_service()
    body = json.dumps({"message": "hello"}).encode()

    events = await events_of(await endpoint.astart_stream(service, user_id=alice.pk, body=body))

    assert [e.type for e in (events[0], events[-1])] == ["start", "done"]
    message_id = events[0].data["message_id"]
    assert events[-1].data["message_id"] == message_id
    await service.ashutdown()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("unit_database")
async def test_start_refuses_a_bad_body_before_anything_is_stored(alice: Any) -> None:
    service = make_service()
    with pytest.raises(InvalidRequest):
        await endpoint.astart_stream(service, user_id=alice.pk, body=b"{not json")
    assert not service.generations
    await service.ashutdown()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("unit_database")
async def test_resume_and_stop_are_the_owners_only(alice: Any, bob: Any) -> None:
    service = make_service()
    body = json.dumps({"message": "hello"}).encode()
    events = await events_of(await endpoint.astart_stream(service, user_id=alice.pk, body=body))
    message_id = events[0].data["message_id"]

    replayed = await events_of(
        await endpoint.aresume_stream(service, user_id=alice.pk, message_id=message_id, after_id=0)
    )
    stopped = await endpoint.astop_stream(service, user_id=alice.pk, message_id=message_id)

    assert [e.type for e in (replayed[0], replayed[-1])] == ["start", "done"]
    # A finished answer: the stop changes nothing and says so.
    assert (stopped.status, stopped.content_type) == (200, "application/json")
    assert json.loads(stopped.body) == {"message_id": message_id, "status": "complete"}
    for step in (
        endpoint.aresume_stream(service, user_id=bob.pk, message_id=message_id, after_id=0),
        endpoint.astop_stream(service, user_id=bob.pk, message_id=message_id),
    ):
        with pytest.raises(NotFound):
            await step
    await service.ashutdown()


@pytest.mark.parametrize("declared", ["11", "999999"])
def test_a_declared_length_over_the_limit_is_refused(declared: str) -> None:
    with pytest.raises(PayloadTooLarge):
        endpoint.refuse_declared_oversize(declared, 10)


@pytest.mark.parametrize("declared", [None, "", "10", "0", "-5", "1e9", "abc"])
def test_a_length_within_the_limit_or_unreadable_is_left_to_the_read(declared: str | None) -> None:
    endpoint.refuse_declared_oversize(declared, 10)  # the body read enforces the limit


# --- refusals -------------------------------------------------------------------------------


def test_a_chat_error_is_its_own_refusal() -> None:
    error = RateLimited(retry_after=7)
    assert endpoint.refusal(error) is error


def test_anything_else_is_logged_and_shown_only_as_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="ai_features.chat.endpoint"):
        refused = endpoint.refusal(RuntimeError("password=hunter2 in SQL"))

    assert isinstance(refused, InternalError)
    assert "hunter2" not in refused.message
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [RuntimeError]


def test_the_one_json_error_shape() -> None:
    error = NotFound()
    refused = endpoint.json_refusal(error)

    assert (refused.status, refused.content_type, refused.headers) == (404, "application/json", {})
    assert json.loads(refused.body) == {"error": {"code": "not_found", "message": error.message}}
    assert json.loads(refused.body) == endpoint.json_error_data(error)
    assert endpoint.json_refusal(RateLimited(retry_after=7)).headers == {"Retry-After": "7"}


def test_sse_refusal_is_one_error_event_with_retry_after_when_set() -> None:
    error = RateLimited(retry_after=7)
    refused = endpoint.sse_refusal(error)

    [data_line] = [line for line in refused.body.decode().splitlines() if "data:" in line]
    assert json.loads(data_line.removeprefix("data: ")) == error.event_data()
    assert (refused.status, refused.content_type) == (429, "text/event-stream; charset=utf-8")
    assert refused.headers["Retry-After"] == "7"
    assert refused.headers["Cache-Control"] == "no-cache, no-transform"
    assert "Retry-After" not in endpoint.sse_refusal(NotFound()).headers


def failing(exc: Exception) -> Any:
    def handler(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("raised", "expected"), [(NotFound(), NotFound), (KeyError("x"), InternalError)]
)
def test_refusals_as_renders_a_sync_handlers_failure(raised: Exception, expected: type) -> None:
    guarded = endpoint.refusals_as(endpoint.json_refusal, lambda reply: reply)(failing(raised))
    assert guarded() == endpoint.json_refusal(expected())


@pytest.mark.parametrize(
    ("raised", "expected"), [(NotFound(), NotFound), (KeyError("x"), InternalError)]
)
async def test_refusals_as_renders_an_async_handlers_failure(
    raised: Exception, expected: type
) -> None:
    async def handler(request: str, message_id: str) -> str:
        raise raised

    guarded = endpoint.refusals_as(endpoint.sse_refusal, lambda reply: reply)(handler)
    assert await guarded("request", message_id="m") == endpoint.sse_refusal(expected())


async def test_refusals_as_passes_results_and_signatures_through() -> None:
    async def ahandler(request: str, message_id: str) -> str:
        return f"{request}:{message_id}"

    def handler(request: str) -> str:
        return request

    def refuse(error: ChatError) -> endpoint.Reply:
        raise AssertionError("nothing failed")

    aguarded = endpoint.refusals_as(refuse, str)(ahandler)
    guarded = endpoint.refusals_as(refuse, str)(handler)
    assert await aguarded("r", message_id="m") == "r:m"
    assert guarded("r") == "r"
    # FastAPI reads the route's parameters through the wrapper.
    assert aguarded.__wrapped__ is ahandler  # type: ignore[attr-defined]
    assert asyncio.iscoroutinefunction(aguarded) and not asyncio.iscoroutinefunction(guarded)

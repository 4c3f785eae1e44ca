"""The streaming core (ChatService) on a real database, with a scripted provider.

The provider is a small object implementing the ChatProvider protocol: it yields the deltas
it was given, and can pause at a gate or look at the database while the answer streams.
Every test checks both what a reader of the stream got and what was stored.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from ai_features import conversations
from ai_features.chat import eventlog, persistence
from ai_features.chat.errors import NotFound, RateLimited, ServerBusy, ServerRestarting
from ai_features.chat.eventlog import MemoryEventLog
from ai_features.chat.events import PING, START_TEXT, ChatEvent, Ping, done_data
from ai_features.chat.limits import RateLimit
from ai_features.chat.requests import ChatRequest
from ai_features.chat.service import (
    INTERNAL_ERROR_MESSAGE,
    INTERRUPTED_MESSAGE,
    REPLAY_ID_BASE,
    RESTARTING_MESSAGE,
    ChatService,
    Ending,
)
from ai_features.models import Conversation, Message
from ai_features.providers import Delta, ProviderError, Usage
from tests.support.coalesced import assert_coalesced_from

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()
MODEL = "scripted-model"


# --- a scripted provider ---------------------------------------------------------------------


class Gate:
    """A step that pauses the answer until released (or cancelled by stop/shutdown)."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.released = asyncio.Event()

    async def __call__(self) -> None:
        self.reached.set()
        await self.released.wait()

    def release(self) -> None:
        self.released.set()


Step = Delta | BaseException | Callable[[], Awaitable[None]]


class ScriptedProvider:
    """Yields its steps in order: a Delta is sent, an exception raised, a callable awaited.

    `reply` (optional) makes the steps depend on the messages received, so one provider
    can answer several turns of a conversation."""

    model = MODEL

    def __init__(
        self,
        steps: Iterable[Step] = (),
        *,
        reply: Callable[[list[dict[str, str]]], Iterable[Step]] | None = None,
        on_call: Callable[[list[dict[str, str]]], Awaitable[None]] | None = None,
        title: str | BaseException | Callable[[], Awaitable[str]] = "A title",
    ) -> None:
        self.steps = list(steps)
        self.title = title
        self.reply = reply
        self.on_call = on_call
        self.calls: list[list[dict[str, str]]] = []
        self.models: list[str | None] = []
        self.titles: list[list[dict[str, str]]] = []
        self.closed = 0

    def model_for(self, requested: str | None) -> str:
        return requested or self.model

    async def astream(
        self,
        messages: list[dict[str, str]],
        *,
        model: str | None = None,
        language: str | None = None,
    ) -> AsyncIterator[Delta]:
        self.calls.append([dict(m) for m in messages])
        self.models.append(model)
        try:
            if self.on_call is not None:
                await self.on_call(messages)
            steps = self.reply(messages) if self.reply is not None else self.steps
            for step in steps:
                if isinstance(step, Delta):
                    yield step
                elif isinstance(step, BaseException):
                    raise step
                else:
                    await step()
        finally:
            self.closed += 1

    async def acomplete(
        self, messages: list[dict[str, str]], *, model: str | None = None, max_tokens: int = 32
    ) -> str:
        self.titles.append([dict(m) for m in messages])
        if isinstance(self.title, BaseException):
            raise self.title
        if callable(self.title):
            return await self.title()
        return self.title


def words(*texts: str, usage: Usage | None = None, reason: str = "stop") -> list[Step]:
    return [*(Delta(text=t) for t in texts), Delta(finish_reason=reason, usage=usage)]


def echo_reply(messages: list[dict[str, str]]) -> list[Step]:
    return words(f"re: {messages[-1]['content']}")


def make_service(provider: ScriptedProvider, **overrides: Any) -> ChatService:
    options: dict[str, Any] = {
        "rate_limit": RateLimit(0),
        "max_concurrent": 0,
        "heartbeat": 30.0,
        "save_interval": 30.0,
        "shutdown_grace": 0.2,
    }
    options.update(overrides)
    return ChatService(provider_factory=lambda: provider, **options)


async def collect(
    service: ChatService, message_id: str, after_id: int = 0, *, keep_pings: bool = False
) -> list[Any]:
    items: list[ChatEvent | Ping] = []
    async with asyncio.timeout(15):
        async for item in service.afollow(message_id, after_id=after_id):
            if keep_pings or isinstance(item, ChatEvent):
                items.append(item)
    return items


async def drain(events: AsyncIterator[ChatEvent | Ping]) -> list[ChatEvent]:
    items: list[ChatEvent] = []
    async with asyncio.timeout(15):
        async for item in events:
            if isinstance(item, ChatEvent):
                items.append(item)
    return items


async def chat(
    service: ChatService, user: AbstractBaseUser, message: str, **request: Any
) -> tuple[persistence.PreparedChat, list[ChatEvent]]:
    prepared = await service.astart(user.pk, request=ChatRequest(message=message, **request))
    return prepared, await collect(service, prepared.assistant_message_id)


async def start_at_gate(service: ChatService, user: AbstractBaseUser, gate: Gate) -> str:
    """Start an answer that waits at `gate`; once it is there, the answer's message id."""
    prepared = await service.astart(user.pk, request=ChatRequest(message="go"))
    await asyncio.wait_for(gate.reached.wait(), 10)
    return prepared.assistant_message_id


def text_of(events: list[ChatEvent]) -> str:
    return "".join(e.data["content"] for e in events if e.type == "content")


def logged(service: ChatService, message_id: str) -> list[ChatEvent]:
    """The message's log, one event per delta (readers may get runs of content joined)."""
    assert isinstance(service.event_log, MemoryEventLog)
    return service.event_log.events_of(message_id)


# --- the database, read from the same thread the core writes from ---------------------------


@sync_to_async
def stored(message_id: str) -> Message:
    return Message.objects.get(pk=message_id)


@sync_to_async
def rows(user: AbstractBaseUser) -> list[tuple[str, str, str]]:
    return list(
        Message.objects.filter(conversation__owner=user)
        .order_by("created_at")
        .values_list("role", "content", "status")
    )


@sync_to_async
def conversation_ids(user: AbstractBaseUser) -> list[str]:
    return [str(pk) for pk in Conversation.objects.filter(owner=user).values_list("pk", flat=True)]


# --- one answer, start to end ----------------------------------------------------------------


async def test_events_are_start_content_done_with_ids_from_one(alice: AbstractBaseUser) -> None:
    provider = ScriptedProvider(
        [
            Delta(text="Hel"),
            Delta(text="lo "),
            Delta(text=""),  # nothing to send
            Delta(text="world"),
            Delta(finish_reason="stop", usage=Usage(7, 3)),
        ]
    )
    service = make_service(provider)

    prepared, events = await chat(service, alice, "Say hello")

    mid = prepared.assistant_message_id
    log = logged(service, mid)
    assert [e.type for e in log] == ["start", "content", "content", "content", "done"]
    assert [e.id for e in log] == [1, 2, 3, 4, 5]
    assert_coalesced_from(events, log)
    assert events[0].data == {
        "type": "start",
        "content": START_TEXT,
        "conversation_id": prepared.conversation_id,
        "message_id": mid,
        "user_message_id": prepared.user_message_id,
        "parent_id": None,  # the first question
        "model": MODEL,
    }
    assert [e.data["content"] for e in log[1:4]] == ["Hel", "lo ", "world"]
    assert text_of(events) == "Hello world"
    assert events[-1].data == {
        "type": "done",
        "content": "",
        "message_id": mid,
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }

    answer = await stored(mid)
    assert answer.role == Message.Role.ASSISTANT
    assert answer.content == "Hello world"
    assert answer.status == Message.Status.COMPLETE
    assert answer.finish_reason == "stop"
    assert (answer.prompt_tokens, answer.completion_tokens) == (7, 3)
    assert answer.model == MODEL
    assert answer.error_code == ""
    assert str(answer.conversation_id) == prepared.conversation_id
    question = await stored(prepared.user_message_id)
    assert (question.role, question.content, question.status) == ("user", "Say hello", "complete")
    assert question.created_at < answer.created_at
    assert service.generations == {}


async def test_user_message_is_stored_before_the_provider_is_called(
    alice: AbstractBaseUser,
) -> None:
    seen: dict[str, Any] = {}

    async def look_at_the_database(messages: list[dict[str, str]]) -> None:
        seen["rows"] = await rows(alice)

    provider = ScriptedProvider(words("ok"), on_call=look_at_the_database)
    service = make_service(provider)

    _prepared, events = await chat(service, alice, "What is stored first?")

    # When the model was called, the question was there, and an empty answer streaming.
    assert seen["rows"] == [
        ("user", "What is stored first?", "complete"),
        ("assistant", "", "streaming"),
    ]
    assert provider.calls[0][-1] == {"role": "user", "content": "What is stored first?"}
    assert events[-1].type == "done"
    assert await rows(alice) == [
        ("user", "What is stored first?", "complete"),
        ("assistant", "ok", "complete"),
    ]


async def test_answer_is_streaming_while_generated_then_complete(alice: AbstractBaseUser) -> None:
    gate = Gate()
    provider = ScriptedProvider([Delta(text="half "), gate, *words("done")])
    service = make_service(provider, save_interval=0)
    prepared = await service.astart(alice.pk, request=ChatRequest(message="go"))
    mid = prepared.assistant_message_id

    await asyncio.wait_for(gate.reached.wait(), 10)
    during = await stored(mid)
    gate.release()
    events = await collect(service, mid)
    after = await stored(mid)

    assert (during.status, during.content, during.finish_reason) == ("streaming", "half ", "")
    assert (after.status, after.content, after.finish_reason) == ("complete", "half done", "stop")
    assert text_of(events) == "half done"


async def test_conversation_title_comes_from_the_first_message(alice: AbstractBaseUser) -> None:
    service = make_service(ScriptedProvider(reply=echo_reply))
    first, _ = await chat(service, alice, "  Plan   a trip\nto Kyoto  ")
    await chat(service, alice, "And Osaka?", conversation_id=first.conversation_id)

    conversation = await Conversation.objects.aget(pk=first.conversation_id)
    assert conversation.title == "Plan a trip to Kyoto"


# --- context sent to the model ---------------------------------------------------------------


async def test_context_is_the_last_max_chat_history_messages(
    alice: AbstractBaseUser, settings: Any
) -> None:
    settings.MAX_CHAT_HISTORY = 3
    provider = ScriptedProvider(reply=echo_reply)
    service = make_service(provider)
    first, _ = await chat(service, alice, "q0")
    for i in range(1, 4):
        await chat(service, alice, f"q{i}", conversation_id=first.conversation_id)

    await chat(service, alice, "q4", conversation_id=first.conversation_id)

    system = {"role": "system", "content": django_settings.CHAT_SYSTEM_PROMPT}
    assert provider.calls[-1] == [
        system,
        {"role": "assistant", "content": "re: q2"},
        {"role": "user", "content": "q3"},
        {"role": "assistant", "content": "re: q3"},
        {"role": "user", "content": "q4"},
    ]
    # The first turn had nothing earlier; the second had the whole first exchange.
    assert provider.calls[0] == [system, {"role": "user", "content": "q0"}]
    assert provider.calls[1] == [
        system,
        {"role": "user", "content": "q0"},
        {"role": "assistant", "content": "re: q0"},
        {"role": "user", "content": "q1"},
    ]
    assert len(await rows(alice)) == 10


async def test_context_keeps_the_newest_history_that_fits_chat_max_context_chars(
    alice: AbstractBaseUser, settings: Any
) -> None:
    provider = ScriptedProvider(reply=lambda messages: words("a" * 100))
    service = make_service(provider)
    first, _ = await chat(service, alice, "q" * 100)
    for _ in range(3):
        await chat(service, alice, "q" * 100, conversation_id=first.conversation_id)
    system_chars = len(django_settings.CHAT_SYSTEM_PROMPT)
    # Room for the system prompt, the new message and exactly three earlier messages.
    settings.CHAT_MAX_CONTEXT_CHARS = system_chars + 10 + 3 * 100 + 99

    await chat(service, alice, "new message", conversation_id=first.conversation_id)

    sent = provider.calls[-1]
    assert sent[0] == {"role": "system", "content": django_settings.CHAT_SYSTEM_PROMPT}
    assert sent[-1] == {"role": "user", "content": "new message"}
    assert [m["role"] for m in sent[1:-1]] == ["assistant", "user", "assistant"]
    assert sum(len(m["content"]) for m in sent) <= settings.CHAT_MAX_CONTEXT_CHARS


async def test_system_prompt_and_new_message_are_sent_even_over_the_limit(
    alice: AbstractBaseUser, settings: Any
) -> None:
    provider = ScriptedProvider(reply=echo_reply)
    service = make_service(provider)
    first, _ = await chat(service, alice, "q0")
    settings.CHAT_MAX_CONTEXT_CHARS = 5

    await chat(service, alice, "a longer new message", conversation_id=first.conversation_id)

    assert provider.calls[-1] == [
        {"role": "system", "content": django_settings.CHAT_SYSTEM_PROMPT},
        {"role": "user", "content": "a longer new message"},
    ]


async def test_zero_chat_max_context_chars_sends_the_whole_history(
    alice: AbstractBaseUser, settings: Any
) -> None:
    provider = ScriptedProvider(reply=echo_reply)
    service = make_service(provider)
    first, _ = await chat(service, alice, "q0" * 50)
    settings.CHAT_MAX_CONTEXT_CHARS = 0

    await chat(service, alice, "q1", conversation_id=first.conversation_id)

    assert len(provider.calls[-1]) == 4


async def test_include_history_false_sends_only_system_and_the_new_message(
    alice: AbstractBaseUser,
) -> None:
    provider = ScriptedProvider(reply=echo_reply)
    service = make_service(provider)
    first, _ = await chat(service, alice, "q0")
    await chat(service, alice, "q1", conversation_id=first.conversation_id)

    await chat(
        service, alice, "fresh", conversation_id=first.conversation_id, include_history=False
    )

    assert provider.calls[-1] == [
        {"role": "system", "content": django_settings.CHAT_SYSTEM_PROMPT},
        {"role": "user", "content": "fresh"},
    ]
    # Still stored in the same conversation.
    assert [r[1] for r in await rows(alice)][-2:] == ["fresh", "re: fresh"]


async def test_failed_answers_are_not_sent_back_as_context(alice: AbstractBaseUser) -> None:
    turns = iter(
        [
            words("good answer"),
            [Delta(text="broken half"), ProviderError("upstream_disconnected")],
            words("fine"),
        ]
    )
    provider = ScriptedProvider(reply=lambda _messages: next(turns))
    service = make_service(provider)
    first, _ = await chat(service, alice, "q0")
    await chat(service, alice, "q1", conversation_id=first.conversation_id)

    await chat(service, alice, "q2", conversation_id=first.conversation_id)

    assert [m["content"] for m in provider.calls[-1][1:]] == ["q0", "good answer", "q1", "q2"]


# --- which conversation ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["other user's", "unknown", "malformed"])
async def test_conversation_of_another_user_is_not_found_and_nothing_is_stored(
    alice: AbstractBaseUser, bob: AbstractBaseUser, kind: str
) -> None:
    provider = ScriptedProvider(reply=echo_reply)
    service = make_service(provider, max_concurrent=1)
    bobs, _ = await chat(service, bob, "bob's secret")
    target = {
        "other user's": bobs.conversation_id,
        "unknown": "0b7c1f3e-2d43-4d1e-9a7b-5a1de0f3c001",
        "malformed": "'; DROP TABLE ai_features_message; --",
    }[kind]
    calls_before = len(provider.calls)

    with pytest.raises(NotFound) as caught:
        await service.astart(
            alice.pk, request=ChatRequest(message="let me in", conversation_id=target)
        )

    assert caught.value.status == 404 and caught.value.code == "not_found"
    assert len(provider.calls) == calls_before
    assert await rows(alice) == []
    assert await conversation_ids(alice) == []
    assert await rows(bob) == [
        ("user", "bob's secret", "complete"),
        ("assistant", "re: bob's secret", "complete"),
    ]
    # The refused request held no concurrency slot.
    _prepared, events = await chat(service, alice, "my own")
    assert events[-1].type == "done"


async def test_no_conversation_id_continues_the_most_recent_one(alice: AbstractBaseUser) -> None:
    provider = ScriptedProvider(reply=echo_reply)
    service = make_service(provider)
    older, _ = await chat(service, alice, "first topic")
    newer, _ = await chat(service, alice, "second topic", conversation_id=None)
    # Without an id the second message went on in the only conversation there was.
    assert newer.conversation_id == older.conversation_id

    other = await sync_to_async(Conversation.objects.create)(owner=alice, title="other")
    # `other` is now the most recently updated conversation.
    third, _ = await chat(service, alice, "third")
    assert third.conversation_id == str(other.pk)

    await chat(service, alice, "back to first", conversation_id=older.conversation_id)
    fourth, _ = await chat(service, alice, "fourth")
    assert fourth.conversation_id == older.conversation_id
    assert len(await conversation_ids(alice)) == 2


async def test_first_message_ever_creates_a_conversation(
    alice: AbstractBaseUser, bob: AbstractBaseUser
) -> None:
    service = make_service(ScriptedProvider(reply=echo_reply))
    bobs, _ = await chat(service, bob, "bob first")
    assert await conversation_ids(alice) == []

    prepared, _ = await chat(service, alice, "hello")

    assert await conversation_ids(alice) == [prepared.conversation_id]
    assert prepared.conversation_id != bobs.conversation_id
    assert await rows(alice) == [
        ("user", "hello", "complete"),
        ("assistant", "re: hello", "complete"),
    ]


# --- failures --------------------------------------------------------------------------------


# --- what the model sends is normalised where it enters -------------------------------------


async def test_a_surrogate_pair_split_across_deltas_reaches_readers_and_db_joined(
    alice: AbstractBaseUser,
) -> None:
    provider = ScriptedProvider(
        words("smile \ud83d", "\ude00 nul\x00 lone\udc00 end \ud83d", usage=Usage(1, 2))
    )
    service = make_service(provider)

    prepared, events = await chat(service, alice, "hi")

    expected = "smile \U0001f600 nul\ufffd lone\ufffd end \ufffd"
    assert text_of(events) == expected
    assert events[-1].type == "done"
    for event in events:  # every event can be sent as UTF-8
        json.dumps(event.data, ensure_ascii=False).encode("utf-8")
    answer = await stored(prepared.assistant_message_id)
    assert (answer.content, answer.status) == (expected, Message.Status.COMPLETE)


@pytest.mark.parametrize(
    ("reason", "usage", "stored_reason", "stored_usage"),
    [
        ("x" * 100, Usage(2**40, -5), "x" * 32, (2**31 - 1, 0)),
        ("a\x00b", Usage(3, 4), "a\ufffdb", (3, 4)),
        ("length", Usage("many", 4), "length", (None, None)),  # type: ignore[arg-type]
    ],
    ids=["long-reason-huge-usage", "nul-in-reason", "usage-not-a-number"],
)
async def test_odd_finish_reason_and_usage_are_validated_and_the_text_stored(
    alice: AbstractBaseUser, reason: str, usage: Usage, stored_reason: str, stored_usage: tuple
) -> None:
    service = make_service(ScriptedProvider(words("kept text", reason=reason, usage=usage)))

    prepared, events = await chat(service, alice, "hi")

    assert events[-1].type == "done"
    assert events[-1].data["finish_reason"] == stored_reason
    answer = await stored(prepared.assistant_message_id)
    assert (answer.content, answer.status) == ("kept text", Message.Status.COMPLETE)
    assert answer.finish_reason == stored_reason
    assert (answer.prompt_tokens, answer.completion_tokens) == stored_usage


async def test_a_refused_final_write_still_stores_the_text(alice: AbstractBaseUser) -> None:
    service = make_service(ScriptedProvider())
    prepared = await persistence.aprepare_chat(
        alice.pk, request=ChatRequest(message="hi"), model_for=lambda _: MODEL
    )
    mid = prepared.assistant_message_id
    await service.event_log.aopen(mid)
    # Metadata the database refuses (a negative count breaks the column's CHECK) that got
    # past validation, e.g. a future bug: the answer's text must survive it.
    ending = Ending.complete("stop", usage={"prompt_tokens": -1, "completion_tokens": 1})
    await service._finalize(mid, "the whole answer", ending)

    answer = await stored(mid)
    assert (answer.content, answer.status) == ("the whole answer", Message.Status.COMPLETE)
    assert (answer.prompt_tokens, answer.finish_reason) == (None, "")


async def test_provider_error_mid_stream_ends_with_one_error_and_keeps_the_text(
    alice: AbstractBaseUser,
) -> None:
    provider = ScriptedProvider(
        [Delta(text="part one "), Delta(text="part two"), ProviderError("upstream_disconnected")]
    )
    service = make_service(provider)

    prepared, events = await chat(service, alice, "go")

    mid = prepared.assistant_message_id
    log = logged(service, mid)
    assert [e.type for e in log] == ["start", "content", "content", "error"]
    assert [e.id for e in log] == [1, 2, 3, 4]
    assert_coalesced_from(events, log)
    assert events[-1].data == {
        "type": "error",
        "content": ProviderError.MESSAGES["upstream_disconnected"],
        "code": "upstream_disconnected",
        "message_id": mid,
    }
    answer = await stored(mid)
    assert answer.status == Message.Status.ERROR
    assert answer.content == "part one part two"
    assert answer.error_code == "upstream_disconnected"
    assert answer.finish_reason == "error"
    assert answer.prompt_tokens is None


async def test_unexpected_exception_is_an_internal_error_without_its_text(
    alice: AbstractBaseUser,
) -> None:
    secret = "postgres://admin:hunter2@db.internal/prod sk-live-123"
    provider = ScriptedProvider([Delta(text="a"), RuntimeError(secret)])
    service = make_service(provider)

    prepared, events = await chat(service, alice, "go")

    final = events[-1]
    assert final.type == "error" and final.data["code"] == "internal_error"
    assert final.data["content"] == INTERNAL_ERROR_MESSAGE
    assert all(secret not in str(e.data) for e in events)
    answer = await stored(prepared.assistant_message_id)
    assert (answer.status, answer.content, answer.error_code) == ("error", "a", "internal_error")
    assert secret not in answer.content


async def test_a_started_answer_names_its_producer_with_a_heartbeat(
    alice: AbstractBaseUser,
) -> None:
    """Stored with the answer itself (no separate claim), so a dead process is noticed
    from the first moment of the generation."""
    gate = Gate()
    service = make_service(ScriptedProvider([Delta(text="a"), gate, Delta(text="b")]))
    prepared = await service.astart(alice.pk, request=ChatRequest(message="go"))
    await asyncio.wait_for(gate.reached.wait(), 10)

    row = await stored(prepared.assistant_message_id)
    assert row.status == Message.Status.STREAMING
    assert row.producer == service.liveness.producer
    assert row.heartbeat_at is not None
    gate.release()
    await collect(service, prepared.assistant_message_id)


async def test_partial_text_is_saved_while_streaming_but_not_per_token(
    alice: AbstractBaseUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves: list[str] = []
    real_save_partial = persistence.asave_partial

    async def counting_save_partial(message_id: str, *, content: str) -> bool:
        saves.append(content)
        return await real_save_partial(message_id, content=content)

    monkeypatch.setattr(persistence, "asave_partial", counting_save_partial)
    mid_stream: dict[str, str] = {}
    message_id: dict[str, str] = {}

    async def look() -> None:
        mid_stream["content"] = (await stored(message_id["id"])).content

    async def pause() -> None:
        await asyncio.sleep(0.01)

    bursts, per_burst = 50, 20
    steps: list[Step] = []
    for b in range(bursts):
        steps += [Delta(text=f"t{b}.{i} ") for i in range(per_burst)]
        steps.append(pause)
        if b == 35:
            steps.append(look)
    steps.append(Delta(finish_reason="stop"))
    provider = ScriptedProvider(steps)
    service = make_service(provider, save_interval=0.05)

    prepared = await service.astart(alice.pk, request=ChatRequest(message="a long answer"))
    message_id["id"] = prepared.assistant_message_id
    events = await collect(service, prepared.assistant_message_id)

    full = text_of(events)
    tokens = bursts * per_burst
    assert len(logged(service, prepared.assistant_message_id)) == tokens + 2
    assert_coalesced_from(events, logged(service, prepared.assistant_message_id))
    # 36 pauses of 10 ms had passed: with a 50 ms interval the text had been saved.
    assert mid_stream["content"]
    assert full.startswith(mid_stream["content"])
    assert 1 <= len(saves) <= tokens // 10, len(saves)
    assert all(full.startswith(s) for s in saves)
    assert [len(s) for s in saves] == sorted({len(s) for s in saves})  # growing, no repeats
    assert (await stored(prepared.assistant_message_id)).content == full


# --- stop and shutdown -----------------------------------------------------------------------


async def test_stop_ends_with_done_stopped_and_keeps_the_text(alice: AbstractBaseUser) -> None:
    gate = Gate()
    provider = ScriptedProvider([Delta(text="one "), Delta(text="two "), gate, *words("never")])
    service = make_service(provider)
    mid = await start_at_gate(service, alice, gate)

    snapshot = await service.astop(alice.pk, message_id=mid)

    assert (snapshot.status, snapshot.content, snapshot.finish_reason) == (
        "stopped",
        "one two ",
        "stopped",
    )
    events = await collect(service, mid)
    assert [e.type for e in logged(service, mid)] == ["start", "content", "content", "done"]
    assert_coalesced_from(events, logged(service, mid))
    assert text_of(events) == "one two "
    assert events[-1].data == {
        "type": "done",
        "content": "",
        "message_id": mid,
        "finish_reason": "stopped",
        "usage": None,
    }
    answer = await stored(mid)
    assert (answer.status, answer.content, answer.finish_reason) == (
        "stopped",
        "one two ",
        "stopped",
    )
    assert provider.closed == 1  # the provider's stream was closed, not left running
    assert service.generations == {}
    # Stopping again is harmless and changes nothing.
    again = await service.astop(alice.pk, message_id=mid)
    assert again.status == "stopped"
    assert (await stored(mid)).content == "one two "


async def test_stop_reaches_a_generation_running_in_another_process(
    alice: AbstractBaseUser,
) -> None:
    """Two services stand for two processes sharing the database: the one that receives
    the stop marks the message stopped; the one generating notices at its next save."""
    gate = Gate()
    provider = ScriptedProvider([Delta(text="one "), gate, Delta(text="two "), *words("never")])
    generating = make_service(provider, save_interval=0.0)
    elsewhere = make_service(ScriptedProvider())
    mid = await start_at_gate(generating, alice, gate)

    snapshot = await elsewhere.astop(alice.pk, message_id=mid)
    assert snapshot.status == "stopped"
    gate.release()

    events = await collect(generating, mid)
    assert events[-1].data["type"] == "done"
    assert events[-1].data["finish_reason"] == "stopped"
    answer = await stored(mid)
    assert answer.status == "stopped"
    # Text that reached the generating process is kept, never text after the stop was seen.
    assert answer.content.startswith("one ") and "never" not in answer.content
    assert generating.generations == {}


async def test_stop_by_another_user_is_not_found_and_changes_nothing(
    alice: AbstractBaseUser, bob: AbstractBaseUser
) -> None:
    gate = Gate()
    service = make_service(ScriptedProvider([Delta(text="a"), gate, *words("b")]))
    mid = await start_at_gate(service, alice, gate)

    with pytest.raises(NotFound):
        await service.astop(bob.pk, message_id=mid)

    gate.release()
    events = await collect(service, mid)
    assert events[-1].data["finish_reason"] == "stop"
    assert (await stored(mid)).status == "complete"


async def test_shutdown_interrupts_what_outlives_the_grace_period(
    alice: AbstractBaseUser,
) -> None:
    gate = Gate()
    provider = ScriptedProvider([Delta(text="partial"), gate, *words("never")])
    service = make_service(provider, shutdown_grace=0.2)
    mid = await start_at_gate(service, alice, gate)

    await asyncio.wait_for(service.ashutdown(), 15)

    events = await collect(service, mid)
    assert [e.type for e in events] == ["start", "content", "error"]
    assert events[-1].data == {
        "type": "error",
        "content": RESTARTING_MESSAGE,
        "code": "server_restarting",
        "message_id": mid,
    }
    answer = await stored(mid)
    assert (answer.status, answer.content, answer.error_code) == (
        "interrupted",
        "partial",
        "server_restarting",
    )
    # New streams are refused, and nothing of them is stored.
    with pytest.raises(ServerRestarting) as caught:
        await service.astart(alice.pk, request=ChatRequest(message="too late"))
    assert caught.value.status == 503
    assert len(await rows(alice)) == 2


async def test_shutdown_lets_answers_finish_within_the_grace_period(
    alice: AbstractBaseUser,
) -> None:
    async def think() -> None:
        await asyncio.sleep(0.2)

    service = make_service(
        ScriptedProvider([Delta(text="slow "), think, *words("but complete")]), shutdown_grace=30
    )
    prepared = await service.astart(alice.pk, request=ChatRequest(message="go"))

    await asyncio.wait_for(service.ashutdown(), 15)

    events = await collect(service, prepared.assistant_message_id)
    assert events[-1].type == "done" and events[-1].data["finish_reason"] == "stop"
    answer = await stored(prepared.assistant_message_id)
    assert (answer.status, answer.content) == ("complete", "slow but complete")


# --- limits ----------------------------------------------------------------------------------


async def test_concurrent_streams_per_user_are_capped(
    alice: AbstractBaseUser, bob: AbstractBaseUser
) -> None:
    gate = Gate()
    provider = ScriptedProvider([Delta(text="x"), gate, *words("y")])
    service = make_service(provider, max_concurrent=2)

    # All at once: the slots are reserved before the first await, so only two get one.
    results = await asyncio.gather(
        *(service.astart(alice.pk, request=ChatRequest(message=f"m{i}")) for i in range(4)),
        return_exceptions=True,
    )

    started = [r for r in results if isinstance(r, persistence.PreparedChat)]
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(started) == 2 and len(refused) == 2, results
    for error in refused:
        assert error.status == 429 and error.code == "rate_limited"
        assert isinstance(error.retry_after, int) and error.retry_after > 0
    assert [r[0] for r in await rows(alice)].count("user") == 2
    # Per user: bob is not affected.
    bobs = await service.astart(bob.pk, request=ChatRequest(message="bob"))
    # A finished (here: stopped) stream frees its slot.
    await service.astop(alice.pk, message_id=started[0].assistant_message_id)
    again = await service.astart(alice.pk, request=ChatRequest(message="again"))

    gate.release()
    for prepared in (started[1], bobs, again):
        assert (await collect(service, prepared.assistant_message_id))[-1].type == "done"


async def test_rate_limit_per_minute_refuses_with_retry_after(
    alice: AbstractBaseUser, bob: AbstractBaseUser
) -> None:
    provider = ScriptedProvider(reply=echo_reply)
    service = make_service(provider, rate_limit=RateLimit(2))
    await chat(service, alice, "one")
    await chat(service, alice, "two")

    with pytest.raises(RateLimited) as caught:
        await service.astart(alice.pk, request=ChatRequest(message="three"))

    assert caught.value.status == 429
    assert caught.value.retry_after is not None and 1 <= caught.value.retry_after <= 60
    assert [r[1] for r in await rows(alice) if r[0] == "user"] == ["one", "two"]
    assert len(provider.calls) == 2
    _prepared, events = await chat(service, bob, "bob is counted apart")
    assert events[-1].type == "done"


# --- reading: heartbeats and resume ----------------------------------------------------------


async def test_follow_sends_pings_while_the_log_is_quiet(alice: AbstractBaseUser) -> None:
    async def slow_first_token() -> None:
        await asyncio.sleep(0.5)

    service = make_service(ScriptedProvider([slow_first_token, *words("finally")]), heartbeat=0.05)
    prepared = await service.astart(alice.pk, request=ChatRequest(message="go"))

    items = await collect(service, prepared.assistant_message_id, keep_pings=True)

    kinds = ["ping" if item is PING else item.type for item in items]
    assert kinds[0] == "start" and kinds[-2:] == ["content", "done"]
    # 0.5 s of silence at a 0.05 s heartbeat: about ten pings; ask for far fewer.
    assert kinds.count("ping") >= 3
    assert set(kinds[1 : kinds.index("content")]) == {"ping"}


async def test_resume_from_the_log_gives_exactly_the_rest(alice: AbstractBaseUser) -> None:
    service = make_service(ScriptedProvider(words("a", "b", "c", "d", usage=Usage(1, 4))))
    prepared, _ = await chat(service, alice, "go")
    mid = prepared.assistant_message_id
    full = logged(service, mid)
    assert len(full) == 6

    for k in range(len(full)):
        rest = await drain(await service.aresume(alice.pk, message_id=mid, after_id=k))
        assert_coalesced_from(rest, full, after=k)
    # A reader that saw everything still gets the final event (and nothing else).
    after_the_end = await service.aresume(alice.pk, message_id=mid, after_id=len(full))
    assert await drain(after_the_end) == [full[-1]]


async def test_resume_while_live_after_a_disconnect(alice: AbstractBaseUser) -> None:
    gate = Gate()
    provider = ScriptedProvider([Delta(text="a"), Delta(text="b"), gate, *words("c", "d")])
    service = make_service(provider)
    prepared = await service.astart(alice.pk, request=ChatRequest(message="go"))
    mid = prepared.assistant_message_id

    first_part: list[ChatEvent] = []
    reader = service.afollow(mid)
    async for item in reader:
        if isinstance(item, ChatEvent):
            first_part.append(item)
        if text_of(first_part) == "ab":  # all there is before the gate
            break
    await reader.aclose()  # the client went away; the generation must go on
    gate.release()
    rest = await drain(await service.aresume(alice.pk, message_id=mid, after_id=first_part[-1].id))

    events = first_part + rest
    assert_coalesced_from(events, logged(service, mid))
    assert text_of(events) == "abcd"
    assert events[-1].type == "done"
    assert (await stored(mid)).content == "abcd"


async def test_resume_of_another_users_message_is_not_found(
    alice: AbstractBaseUser, bob: AbstractBaseUser
) -> None:
    service = make_service(ScriptedProvider(words("private")))
    prepared, _ = await chat(service, alice, "go")

    with pytest.raises(NotFound):
        await service.aresume(bob.pk, message_id=prepared.assistant_message_id, after_id=0)
    with pytest.raises(NotFound):
        # Not an answer:
        await service.aresume(alice.pk, message_id=prepared.user_message_id, after_id=0)


async def test_resume_of_a_finished_message_from_the_database(alice: AbstractBaseUser) -> None:
    first_process = make_service(ScriptedProvider(words("Hello, ", "world", usage=Usage(4, 2))))
    prepared, live = await chat(first_process, alice, "go")
    mid = prepared.assistant_message_id
    # Another process (or a restart): its log has never seen this message.
    second_process = make_service(ScriptedProvider())

    events = await drain(await second_process.aresume(alice.pk, message_id=mid, after_id=0))

    base = REPLAY_ID_BASE  # replay ids have their own range (see ChatService.resume)
    assert [(e.id, e.type) for e in events] == [
        (base + 1, "start"),
        (base + 2, "content"),
        (base + 3, "done"),
    ]
    assert events[0].data["message_id"] == mid
    assert events[0].data["conversation_id"] == prepared.conversation_id
    assert events[1].data["content"] == "Hello, world" == text_of(live)
    assert events[2].data == live[-1].data
    # After a replay id the ids go on from it; `start` tells the client to reset.
    later = await drain(await second_process.aresume(alice.pk, message_id=mid, after_id=base + 7))
    assert [(e.id, e.type) for e in later] == [
        (base + 8, "start"),
        (base + 9, "content"),
        (base + 10, "done"),
    ]


@pytest.mark.parametrize(
    ("script", "final"),
    [
        (
            [Delta(text="half"), ProviderError("upstream_timeout")],
            {"type": "error", "code": "upstream_timeout"},
        ),
        ("stop", {"type": "done", "finish_reason": "stopped"}),
        ("shutdown", {"type": "error", "code": "interrupted", "content": INTERRUPTED_MESSAGE}),
    ],
    ids=["error", "stopped", "interrupted"],
)
async def test_resume_from_the_database_ends_as_the_message_ended(
    alice: AbstractBaseUser, script: Any, final: dict[str, str]
) -> None:
    gate = Gate()
    steps = script if isinstance(script, list) else [Delta(text="half"), gate]
    first_process = make_service(ScriptedProvider(steps), shutdown_grace=0)
    prepared = await first_process.astart(alice.pk, request=ChatRequest(message="go"))
    mid = prepared.assistant_message_id
    if script == "stop":
        await asyncio.wait_for(gate.reached.wait(), 10)
        await first_process.astop(alice.pk, message_id=mid)
    elif script == "shutdown":
        await asyncio.wait_for(gate.reached.wait(), 10)
        await first_process.ashutdown()
    await collect(first_process, mid)

    events = await drain(
        await make_service(ScriptedProvider()).aresume(alice.pk, message_id=mid, after_id=0)
    )

    assert [e.type for e in events] == ["start", "content", final["type"]]
    assert events[1].data["content"] == "half"
    assert final.items() <= events[-1].data.items()
    assert events[-1].data["message_id"] == mid


async def test_resume_from_the_database_follows_an_answer_another_process_writes(
    alice: AbstractBaseUser,
) -> None:
    gate = Gate()
    writer = make_service(
        ScriptedProvider([Delta(text="abc"), Delta(text=""), gate, *words("def")]),
        save_interval=0,
    )
    mid = await start_at_gate(writer, alice, gate)
    reader_process = make_service(ScriptedProvider(), save_interval=0.02, heartbeat=30)

    events = await reader_process.aresume(alice.pk, message_id=mid, after_id=0)
    got: list[ChatEvent] = []
    async with asyncio.timeout(15):
        async for item in events:
            if not isinstance(item, ChatEvent):
                continue
            got.append(item)
            if len(got) == 2:
                # The stored part has been replayed; now the writer finishes.
                assert [e.type for e in got] == ["start", "content"]
                assert got[1].data["content"] == "abc"
                gate.release()

    assert text_of(got) == "abcdef"
    assert got[-1].type == "done"
    assert [e.id for e in got] == [REPLAY_ID_BASE + i for i in range(1, len(got) + 1)]
    await collect(writer, mid)


# --- edges found in review ---------------------------------------------------------------------


async def test_a_generation_cancelled_before_it_ran_still_ends(alice: AbstractBaseUser) -> None:
    provider = ScriptedProvider(words("never", "sent"))
    service = make_service(provider)
    prepared = await service.astart(alice.pk, request=ChatRequest(message="go"))
    mid = prepared.assistant_message_id
    # No await in between: the task has not taken its first step yet.
    service.generations[mid].cancel("stopped")

    events = await collect(service, mid)

    assert [e.type for e in events] == ["start", "done"]
    assert events[-1].data["finish_reason"] == "stopped"
    assert provider.calls == []  # the model was never asked
    assert (await stored(mid)).status == "stopped"
    assert service.generations == {}


async def test_a_start_that_meets_a_shutdown_is_refused_and_ends_its_answer(
    alice: AbstractBaseUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service(ScriptedProvider(words("never")))
    real_prepare = persistence.aprepare_chat

    async def prepare_then_shutdown(*args: Any, **kwargs: Any) -> persistence.PreparedChat:
        prepared = await real_prepare(*args, **kwargs)
        service.begin_shutdown()  # SIGTERM arrives while the rows were being written
        return prepared

    monkeypatch.setattr(persistence, "aprepare_chat", prepare_then_shutdown)

    with pytest.raises(ServerRestarting):
        await service.astart(alice.pk, request=ChatRequest(message="go"))

    assert service.generations == {}
    assert [(role, status) for role, _content, status in await rows(alice)] == [
        ("user", "complete"),
        ("assistant", "interrupted"),
    ]
    await service.ashutdown()


async def test_a_replay_id_resumes_a_live_log_from_its_start(alice: AbstractBaseUser) -> None:
    gate = Gate()
    service = make_service(ScriptedProvider([Delta(text="one "), gate, *words("two")]))
    mid = await start_at_gate(service, alice, gate)

    # The client's last id came from another process's database replay.
    events = await service.aresume(alice.pk, message_id=mid, after_id=REPLAY_ID_BASE + 2)
    gate.release()
    got = await drain(events)

    assert got[0].type == "start"  # tells the client to reset its text
    assert text_of(got) == "one two"
    assert got[-1].type == "done"


# --- automatic titles ------------------------------------------------------------------------


@sync_to_async
def conversation_title(conversation_id: str) -> tuple[str, bool]:
    conversation = Conversation.objects.get(pk=conversation_id)
    return conversation.title, conversation.title_is_custom


async def wait_for_background(service: ChatService) -> None:
    # A generation starts its title task after the final event, which a reader may see
    # first: wait for the generations to end, then for what they started.
    generating = [t for t in asyncio.all_tasks() if t.get_name().startswith("generate-")]
    async with asyncio.timeout(10):
        if generating:
            await asyncio.wait(generating)
        while service._background:
            await asyncio.sleep(0.01)


async def test_the_title_request_comes_after_the_final_event(
    alice: AbstractBaseUser, settings: Any
) -> None:
    settings.CHAT_AUTO_TITLE = True
    title_asked = asyncio.Event()
    title_answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def slow_title() -> str:
        title_asked.set()
        return await title_answer

    provider = ScriptedProvider(words("an ", "answer"), title=slow_title)
    service = make_service(provider)

    prepared, events = await chat(service, alice, "  Plan a  trip\nto Kyoto  ")

    # The stream ended while the title request still waits.
    assert events[-1].type == "done"
    await asyncio.wait_for(title_asked.wait(), 5)
    assert await conversation_title(prepared.conversation_id) == ("Plan a trip to Kyoto", False)
    title_answer.set_result('"Kyoto trip plan."')
    await wait_for_background(service)
    assert await conversation_title(prepared.conversation_id) == ("Kyoto trip plan", False)
    (asked,) = provider.titles
    assert asked[-1] == {"role": "user", "content": "  Plan a  trip\nto Kyoto  "}

    # The second answer asks for no title.
    await chat(service, alice, "more", conversation_id=prepared.conversation_id)
    await wait_for_background(service)
    assert len(provider.titles) == 1


async def test_a_failed_title_keeps_the_cut_question(
    alice: AbstractBaseUser, settings: Any
) -> None:
    settings.CHAT_AUTO_TITLE = True
    provider = ScriptedProvider(words("ok"), title=ProviderError("upstream_timeout"))
    service = make_service(provider)

    prepared, events = await chat(service, alice, "what is a monad")
    await wait_for_background(service)

    assert events[-1].type == "done"
    assert len(provider.titles) == 1
    assert await conversation_title(prepared.conversation_id) == ("what is a monad", False)


async def test_no_title_when_off_or_when_the_answer_failed(
    alice: AbstractBaseUser, settings: Any
) -> None:
    settings.CHAT_AUTO_TITLE = False
    provider = ScriptedProvider(words("ok"))
    service = make_service(provider)
    await chat(service, alice, "first")
    settings.CHAT_AUTO_TITLE = True
    failing = ScriptedProvider([ProviderError("upstream_error")])
    _prepared, events = await chat(make_service(failing), alice, "second", new_conversation=True)

    assert events[-1].type == "error"
    assert provider.titles == [] and failing.titles == []


async def test_a_rename_before_the_title_arrives_wins(
    alice: AbstractBaseUser, settings: Any
) -> None:
    settings.CHAT_AUTO_TITLE = True
    release = asyncio.Event()

    async def late_title() -> str:
        await release.wait()
        return "Generated"

    service = make_service(ScriptedProvider(words("ok"), title=late_title))
    prepared, _events = await chat(service, alice, "question")
    await sync_to_async(conversations.rename_conversation)(alice, prepared.conversation_id, "Mine")
    release.set()
    await wait_for_background(service)

    assert await conversation_title(prepared.conversation_id) == ("Mine", True)


# --- memory and readers (issue 8, item 7) ---------------------------------------------------


async def test_resume_readers_per_user_are_capped_and_freed(
    alice: AbstractBaseUser, bob: AbstractBaseUser
) -> None:
    gate = Gate()
    service = make_service(ScriptedProvider([Delta(text="a"), gate, *words("b")]), max_readers=2)
    prepared = await service.astart(alice.pk, request=ChatRequest(message="go"))
    mid = prepared.assistant_message_id

    first = await service.aresume(alice.pk, message_id=mid, after_id=0)
    second = await service.aresume(alice.pk, message_id=mid, after_id=0)
    with pytest.raises(RateLimited) as refused:
        await service.aresume(alice.pk, message_id=mid, after_id=0)
    assert refused.value.status == 429 and refused.value.retry_after
    # Per user: bob's own answer can still be read.
    bobs = await service.astart(bob.pk, request=ChatRequest(message="bob"))
    bobs_reader = await service.aresume(bob.pk, message_id=bobs.assistant_message_id, after_id=0)

    await first.aclose()  # a client went away: its slot is free
    third = await service.aresume(alice.pk, message_id=mid, after_id=0)
    gate.release()
    for reader in (second, third, bobs_reader):
        assert text_of(await drain(reader)) == "ab"
    # Readers that ran to the end freed theirs too.
    resume = functools.partial(service.aresume, alice.pk, message_id=mid, after_id=0)
    assert len([await drain(await resume()) for _ in range(3)]) == 3


async def test_a_full_event_log_refuses_new_streams_before_storing(
    alice: AbstractBaseUser,
) -> None:
    gate = Gate()
    log = MemoryEventLog(max_bytes=4 * eventlog.EVENT_OVERHEAD_BYTES)
    provider = ScriptedProvider([*(Delta(text="x") for _ in range(5)), gate, *words("y")])
    service = make_service(provider, event_log=log)
    first = await service.astart(alice.pk, request=ChatRequest(message="long"))
    await asyncio.sleep(0.05)  # the live answer fills the budget
    stored_before = await rows(alice)

    with pytest.raises(ServerBusy) as refused:
        await service.astart(alice.pk, request=ChatRequest(message="one more"))
    assert refused.value.status == 503 and refused.value.code == "server_busy"
    assert await rows(alice) == stored_before

    gate.release()
    assert text_of(await collect(service, first.assistant_message_id)) == "xxxxxy"
    # Finished answers make room (compacted, then dropped if need be).
    again = await service.astart(alice.pk, request=ChatRequest(message="again"))
    assert (await collect(service, again.assistant_message_id))[-1].type == "done"


@pytest.mark.parametrize(
    ("ending", "final"),
    [
        (Ending.complete("length", usage=None), done_data("m", "length", None)),
        (Ending.cancelled("stopped"), done_data("m", "stopped", None)),
        (
            Ending.cancelled("shutdown"),
            {"type": "error", "content": RESTARTING_MESSAGE, "code": "server_restarting"},
        ),
        (
            Ending.failed("internal_error", message=INTERNAL_ERROR_MESSAGE),
            {"type": "error", "content": INTERNAL_ERROR_MESSAGE, "code": "internal_error"},
        ),
    ],
)
def test_each_ending_has_its_final_event(ending: Ending, final: dict) -> None:
    """The stored status and the final event come from one value: stop and complete are a
    `done`, everything else an `error` with its code."""
    assert ending.final_data("m") == {**final, "message_id": "m"}


class FailingAfterLog(MemoryEventLog):
    """An event log whose reads fail once a reader is past `after`: a bug, or a shared
    log that went away."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    async def aread_after(self, message_id: str, after_id: int, timeout: float) -> list[ChatEvent]:
        if after_id >= self.after:
            raise RuntimeError("secret detail of the log's failure")
        return (await super().aread_after(message_id, after_id, timeout))[: self.after - after_id]


async def test_a_live_reader_whose_log_fails_still_gets_a_final_event(
    alice: AbstractBaseUser, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(ScriptedProvider(words("a", "b", "c")), event_log=FailingAfterLog(2))
    prepared = await service.astart(alice.pk, request=ChatRequest(message="go"))
    generation = service.generations[prepared.assistant_message_id].task

    events = await collect(service, prepared.assistant_message_id)
    await asyncio.wait_for(generation, 10)  # the answer itself goes on to its end

    assert [e.type for e in events] == ["start", "content", "error"]
    assert [e.id for e in events] == [1, 2, 3]
    assert events[-1].data["code"] == "internal_error"
    assert "secret" not in json.dumps(events[-1].data)
    assert "stream reader failed" in caplog.text

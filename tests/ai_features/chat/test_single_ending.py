"""An answer ends once, whoever ends it first: its producer, the stale sweep (database
heartbeat) or a reader of the Redis log that finds the producer's `live` key gone.

A producer that was only slow (a stalled event loop, a database or Redis hiccup longer than
STREAM_STALE_AFTER_SECONDS) must not overwrite the `interrupted` that readers elsewhere
were already told, nor send its readers a different final event; two readers that both
notice a dead producer must not count it twice. On a real database (SQLite here,
PostgreSQL in the integration runs) and, for the Redis parts, tests/ai_features/chat/
test_redis_eventlog.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from ai_features import metrics
from ai_features.chat import persistence
from ai_features.chat.requests import ChatRequest
from ai_features.chat.service import INTERRUPTED_MESSAGE, aend_orphaned_message, final_data_for
from ai_features.models import Conversation, Message
from ai_features.providers import Delta
from tests.ai_features.chat.test_service import (
    Gate,
    ScriptedProvider,
    collect,
    make_service,
    stored,
    words,
)

pytestmark = pytest.mark.django_db(transaction=True)


def ended(status: str) -> float:
    """c3_streams_total{status} in this process."""
    return metrics.STREAMS_TOTAL.labels(status)._value.get()


@sync_to_async
def streaming_message(user: AbstractBaseUser, content: str = "") -> str:
    conversation = Conversation.objects.create(owner=user, title="t")
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content="q"
    )
    answer = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        parent=question,
        content=content,
        status=Message.Status.STREAMING,
        heartbeat_at=timezone.now(),
    )
    return str(answer.pk)


@sync_to_async
def age_heartbeat(message_id: str) -> None:
    """As if the producer had shown no sign of life for a long time."""
    Message.objects.filter(pk=message_id).update(heartbeat_at=timezone.now() - timedelta(hours=1))


async def test_a_producer_swept_as_dead_keeps_the_sweeps_ending(
    alice: AbstractBaseUser, settings
) -> None:
    settings.CHAT_AUTO_TITLE = True  # a first answer: it would get a title if it completed
    gate = Gate()
    provider = ScriptedProvider([Delta(text="before "), gate, *words("after")])
    service = make_service(provider)
    prepared = await service.astart(alice.pk, request=ChatRequest(message="q"))
    message_id = prepared.assistant_message_id
    reader = asyncio.create_task(collect(service, message_id))
    await asyncio.wait_for(gate.reached.wait(), 5)
    interrupted, complete = ended("interrupted"), ended("complete")

    # The producer stalls past the stale window; a reader elsewhere runs the sweep.
    await age_heartbeat(message_id)
    assert await persistence.aexpire_stale_streaming() == 1
    gate.release()  # ...and then the producer wakes up and completes its answer.
    events = await reader

    finals = [e for e in events if e.is_final]
    assert len(finals) == 1
    # The readers here are told what the readers elsewhere were told.
    assert finals[0].type == "error" and finals[0].data["code"] == "interrupted"
    assert finals[0].data["content"] == INTERRUPTED_MESSAGE
    row = await stored(message_id)
    assert row.status == Message.Status.INTERRUPTED
    assert row.content == "before after"  # nothing the producer had is lost
    assert ended("interrupted") == interrupted + 1  # counted once, by the sweep
    assert ended("complete") == complete
    await asyncio.sleep(0.2)
    assert provider.titles == []  # an interrupted first answer gets no automatic title
    await service.ashutdown()


async def test_a_sweep_after_the_producer_ended_changes_nothing(alice: AbstractBaseUser) -> None:
    message_id = await streaming_message(alice)
    assert (
        await persistence.afinish_message(
            message_id, content="whole answer", status=Message.Status.COMPLETE, finish_reason="stop"
        )
        is None
    )
    await age_heartbeat(message_id)
    interrupted = ended("interrupted")
    assert await persistence.aexpire_stale_streaming() == 0
    row = await stored(message_id)
    assert (row.status, row.content) == (Message.Status.COMPLETE, "whole answer")
    assert ended("interrupted") == interrupted


async def test_an_orphan_found_by_two_readers_is_ended_and_counted_once(
    alice: AbstractBaseUser,
) -> None:
    message_id = await streaming_message(alice, content="saved")
    interrupted = ended("interrupted")
    first = await persistence.ainterrupt_orphan(message_id, logged_text="saved and logged")
    second = await persistence.ainterrupt_orphan(message_id, logged_text="saved and logged")
    assert first is not None and second is not None
    assert (first.ended_here, second.ended_here) == (True, False)
    assert first.snapshot.status == second.snapshot.status == Message.Status.INTERRUPTED
    assert ended("interrupted") == interrupted + 1
    row = await stored(message_id)
    assert (row.content, row.error_code) == ("saved and logged", "interrupted")
    # A third reader's ending sends the same final event, and counts nothing.
    final = await aend_orphaned_message(message_id, "saved and logged")
    assert final == final_data_for(first.snapshot)
    assert final["type"] == "error" and final["code"] == "interrupted"
    assert ended("interrupted") == interrupted + 1


async def test_an_orphan_ending_never_overwrites_a_completed_answer(
    alice: AbstractBaseUser,
) -> None:
    message_id = await streaming_message(alice)
    assert await persistence.afinish_message(
        message_id, content="the whole answer", status=Message.Status.COMPLETE,
        finish_reason="stop",
    ) is None  # fmt: skip
    interrupted = ended("interrupted")
    ending = await persistence.ainterrupt_orphan(message_id, logged_text="the whole")
    assert ending is not None and not ending.ended_here
    assert ending.snapshot.status == Message.Status.COMPLETE
    final = await aend_orphaned_message(message_id, "the whole")
    assert final["type"] == "done"
    row = await stored(message_id)
    assert (row.status, row.content) == (Message.Status.COMPLETE, "the whole answer")
    assert ended("interrupted") == interrupted


async def test_a_late_producer_adds_only_the_text_the_orphan_ending_lacked(
    alice: AbstractBaseUser,
) -> None:
    message_id = await streaming_message(alice)
    ending = await persistence.ainterrupt_orphan(message_id, logged_text="logged part")
    assert ending is not None and ending.ended_here
    stands = await persistence.afinish_message(
        message_id, content="logged part and the rest", status=Message.Status.COMPLETE,
        finish_reason="stop",
    )  # fmt: skip
    assert stands is not None and stands.status == Message.Status.INTERRUPTED
    row = await stored(message_id)
    assert (row.status, row.error_code) == (Message.Status.INTERRUPTED, "interrupted")
    assert row.content == "logged part and the rest"


async def test_a_stop_from_elsewhere_still_stands_over_a_completion(
    alice: AbstractBaseUser,
) -> None:
    message_id = await streaming_message(alice)
    assert await persistence.amark_stopped(message_id)
    assert (
        await persistence.afinish_message(
            message_id, content="all of it", status=Message.Status.COMPLETE, finish_reason="stop"
        )
        is None
    )  # the producer's ending is the one stored (a stop is a request)
    row = await stored(message_id)
    assert (row.status, row.finish_reason, row.content) == (
        Message.Status.STOPPED, "stopped", "all of it",
    )  # fmt: skip

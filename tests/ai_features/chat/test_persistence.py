"""What the streaming core stores (ai_features/chat/persistence.py), on SQLite and
PostgreSQL: the question before the answer, ownership, the stop-versus-complete race, the
fallback write, the stale sweep and the end of an orphaned answer.

The functions are awaited the way the stream service awaits them (tests/support/loop_db.py:
on PostgreSQL a start, a partial save and an ending run on the loop's own connections, the
rest on the database threads), from sync tests, so each runs its own transactions on a
committed database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.utils import timezone

from ai_features.chat import persistence
from ai_features.chat.errors import InvalidRequest, NotFound
from ai_features.chat.requests import ChatRequest
from ai_features.models import Conversation, Message
from tests.support.loop_db import call
from tests.support.servers import POSTGRES_ADMIN_DSN

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("unit_database")]

User = get_user_model()
FULL_TEXT = "The whole answer, every word of it."


def model_for(requested: str | None) -> str:
    return f"answering:{requested or 'default'}"


def prepare(user: Any, message: str = "Hello?", **fields: Any) -> persistence.PreparedChat:
    request = ChatRequest(message=message, **fields)
    return call(persistence.aprepare_chat, user.pk, request=request, model_for=model_for)


def streaming_answer(user: Any, content: str = "") -> Message:
    prepared = prepare(user)
    Message.objects.filter(pk=prepared.assistant_message_id).update(content=content)
    return Message.objects.get(pk=prepared.assistant_message_id)


def complete_with_finish_message(message_id: str, content: str = FULL_TEXT, **extra: Any) -> None:
    """The producer's own ending: the whole text, `complete`, finish reason `stop`."""
    call(
        persistence.afinish_message,
        message_id,
        content=content,
        status="complete",
        finish_reason="stop",
        **extra,
    )


# --- aprepare_chat --------------------------------------------------------------------------


def test_a_first_message_creates_the_conversation_question_and_empty_answer(alice: Any) -> None:
    """The question is stored, and an empty `streaming` answer below it is the leaf."""
    prepared = prepare(alice, "  What is   WAL\nmode?  ")

    conversation = Conversation.objects.get(owner=alice)
    question = Message.objects.get(pk=prepared.user_message_id)
    answer = Message.objects.get(pk=prepared.assistant_message_id)
    assert prepared.conversation_id == str(conversation.pk)
    assert (question.role, question.content, question.parent_id) == (
        "user",
        "  What is   WAL\nmode?  ",
        None,
    )
    assert (answer.role, answer.status, answer.content, answer.parent_id) == (
        "assistant",
        "streaming",
        "",
        question.pk,
    )
    assert answer.model == prepared.answer_model == "answering:default"
    assert conversation.current_message_id == answer.pk
    assert conversation.title == "What is WAL mode?"
    assert prepared.parent_id is None
    assert prepared.context[0] == {"role": "system", "content": django_settings.CHAT_SYSTEM_PROMPT}
    assert prepared.context[-1] == {"role": "user", "content": question.content}
    assert len(prepared.context) == 2


def test_a_long_first_message_is_cut_to_the_title_length(alice: Any) -> None:
    """The title is the first TITLE_LENGTH characters, the last one an ellipsis."""
    text = "あ" * 100
    prepare(alice, text)

    title = Conversation.objects.get(owner=alice).title
    assert len(title) == persistence.TITLE_LENGTH
    assert title == "あ" * (persistence.TITLE_LENGTH - 1) + "…"


def test_no_conversation_id_continues_the_latest_with_its_history(alice: Any) -> None:
    """Without an id the newest conversation goes on, and its finished turn is context."""
    first = prepare(alice, "one")
    complete_with_finish_message(first.assistant_message_id, content="answer one")
    second = prepare(alice, "two")

    assert second.conversation_id == first.conversation_id
    assert second.parent_id == first.assistant_message_id
    assert [m["content"] for m in second.context[1:]] == ["one", "answer one", "two"]
    no_history = prepare(alice, "three", include_history=False)
    assert [m["content"] for m in no_history.context[1:]] == ["three"]
    assert Conversation.objects.filter(owner=alice).count() == 1


def test_new_conversation_starts_another(alice: Any) -> None:
    """`new_conversation` never appends to the latest conversation."""
    first = prepare(alice, "one")
    second = prepare(alice, "two", new_conversation=True)

    assert second.conversation_id != first.conversation_id
    assert second.parent_id is None
    assert Conversation.objects.filter(owner=alice).count() == 2


@pytest.mark.parametrize("make_id", ["foreign", "malformed", "unknown"])
def test_another_users_or_a_bad_conversation_id_is_not_found(
    alice: Any, bob: Any, make_id: str
) -> None:
    """Foreign, malformed and unknown ids answer alike (NotFound) and store nothing."""
    bobs = prepare(bob, "bob's secret")
    conversation_id = {
        "foreign": bobs.conversation_id,
        "malformed": "not-a-uuid",
        "unknown": "00000000-0000-4000-8000-000000000000",
    }[make_id]
    before = Message.objects.count()

    with pytest.raises(NotFound):
        prepare(alice, "let me in", conversation_id=conversation_id)

    assert Message.objects.count() == before
    assert not Conversation.objects.filter(owner=alice).exists()


@pytest.mark.parametrize(
    ("owner", "regenerate", "edit", "error"),
    [
        # A message id of someone else's conversation is NotFound for regenerate and edit.
        pytest.param(
            "bob", "assistant_message_id", "user_message_id", NotFound, id="another_users"
        ),
        # Only answers are regenerated and only questions edited: InvalidRequest.
        pytest.param(
            "alice", "user_message_id", "assistant_message_id", InvalidRequest, id="wrong_role"
        ),
    ],
)
def test_regenerating_or_editing_a_message_not_for_it_is_refused_and_stores_nothing(
    alice: Any, bob: Any, owner: str, regenerate: str, edit: str, error: type[Exception]
) -> None:
    prepared = prepare({"alice": alice, "bob": bob}[owner], f"{owner}'s question")

    with pytest.raises(error):
        prepare(alice, "", regenerate_message_id=getattr(prepared, regenerate))
    with pytest.raises(error):
        prepare(alice, "edited", edit_message_id=getattr(prepared, edit))
    assert Message.objects.count() == 2


def test_regenerate_adds_a_sibling_answer_to_the_same_question(alice: Any) -> None:
    """A regenerated answer hangs below the same question, which is not stored again."""
    prepared = prepare(alice, "q")
    again = prepare(alice, "", regenerate_message_id=prepared.assistant_message_id)

    assert again.user_message_id == prepared.user_message_id
    assert again.assistant_message_id != prepared.assistant_message_id
    assert Message.objects.filter(role="user").count() == 1
    assert again.context[-1] == {"role": "user", "content": "q"}
    conversation = Conversation.objects.get(pk=prepared.conversation_id)
    assert str(conversation.current_message_id) == again.assistant_message_id


def test_the_model_asked_for_is_kept_while_it_is_offered(alice: Any, settings: Any) -> None:
    """A chosen model is stored on the conversation, reused next turn, and dropped (the
    default answers) once OPENAI_MODELS no longer offers it."""
    settings.OPENAI_MODELS = ["small", "large"]
    first = prepare(alice, "one", model="large")
    assert (first.model, first.answer_model) == ("large", "answering:large")
    assert Conversation.objects.get(pk=first.conversation_id).model == "large"

    second = prepare(alice, "two")
    assert (second.model, second.answer_model) == ("large", "answering:large")

    settings.OPENAI_MODELS = ["small"]
    third = prepare(alice, "three")
    assert (third.model, third.answer_model) == (None, "answering:default")


# --- the conversation selectors (shared with conversations.py) ------------------------------


def test_owned_conversation_is_the_owners_only(alice: Any, bob: Any) -> None:
    """Malformed, missing and foreign ids answer alike: NotFound."""
    mine = Conversation.objects.create(owner=alice)
    bobs = Conversation.objects.create(owner=bob)

    assert persistence.owned_conversation(alice.pk, conversation_id=str(mine.pk)) == mine
    with transaction.atomic():  # the lock the core takes before it writes
        assert (
            persistence.owned_conversation(alice.pk, conversation_id=str(mine.pk), lock=True)
            == mine
        )
    for foreign in (str(bobs.pk), "not-a-uuid", "", None):
        with pytest.raises(NotFound):
            persistence.owned_conversation(alice.pk, conversation_id=foreign)


def test_latest_conversation_is_the_owners_most_recently_active(alice: Any, bob: Any) -> None:
    assert persistence.latest_conversation(alice.pk) is None
    older = Conversation.objects.create(owner=alice)
    Conversation.objects.create(owner=alice)  # created later, but touched earlier
    Conversation.objects.create(owner=bob)  # not alice's
    Conversation.objects.filter(pk=older.pk).update(updated_at=timezone.now() + timedelta(1))

    assert persistence.latest_conversation(alice.pk) == older
    with transaction.atomic():
        assert persistence.latest_conversation(alice.pk, lock=True) == older


# --- partial saves, stop and finish ---------------------------------------------------------


def test_save_partial_only_writes_while_streaming(alice: Any) -> None:
    """A partial save lands while `streaming` and is refused (False) once stopped."""
    answer = streaming_answer(alice)

    assert call(persistence.asave_partial, str(answer.pk), content="The whole") is True
    answer.refresh_from_db()
    assert (answer.content, answer.status) == ("The whole", "streaming")

    assert call(persistence.amark_stopped, str(answer.pk)) is True
    assert call(persistence.asave_partial, str(answer.pk), content="The whole answer") is False
    answer.refresh_from_db()
    assert (answer.content, answer.status, answer.finish_reason) == (
        "The whole",
        "stopped",
        "stopped",
    )


def test_a_stop_before_the_answer_completes_stands_with_the_whole_text(alice: Any) -> None:
    """Stop first, complete second: `stopped` wins and the complete text and usage land."""
    answer = streaming_answer(alice, "The whole")

    assert call(persistence.amark_stopped, str(answer.pk)) is True
    complete_with_finish_message(
        str(answer.pk), usage={"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}
    )

    answer.refresh_from_db()
    assert (answer.status, answer.finish_reason, answer.content) == (
        "stopped",
        "stopped",
        FULL_TEXT,
    )
    assert (answer.prompt_tokens, answer.completion_tokens) == (7, 9)


def test_a_stop_after_the_answer_completed_changes_nothing(alice: Any) -> None:
    """Complete first, stop second: the stop is refused (False) and `complete` stays."""
    answer = streaming_answer(alice)
    complete_with_finish_message(str(answer.pk))

    assert call(persistence.amark_stopped, str(answer.pk)) is False

    answer.refresh_from_db()
    assert (answer.status, answer.finish_reason, answer.content) == (
        "complete",
        "stop",
        FULL_TEXT,
    )


def complete_with_store_text(message_id: str) -> None:
    call(persistence.astore_text, message_id, content=FULL_TEXT, status="complete")


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    "complete_answer", [complete_with_finish_message, complete_with_store_text]
)
def test_a_stop_confirmed_while_the_answer_completes_still_stands(
    alice: Any, unit_database: str, complete_answer: Callable[[str], None]
) -> None:
    """The race itself: a stop committed while the `complete` write is already running
    (afinish_message, or its fallback astore_text) must not be overwritten by `complete`.

    Forced on PostgreSQL: the stop's UPDATE holds the row lock until afinish_message is seen
    waiting for it, then commits. SQLite serialises writers at BEGIN IMMEDIATE, so there
    is no such interleaving to force there."""
    assert unit_database == "postgresql"
    answer = streaming_answer(alice, "The whole")
    message_id = str(answer.pk)
    stop_updated = threading.Event()
    release_stop = threading.Event()
    stopped_rows: list[int] = []
    errors: list[BaseException] = []

    def stop_in_a_transaction() -> None:
        try:
            with transaction.atomic():
                stopped_rows.append(
                    Message.objects.filter(pk=message_id, status="streaming").update(
                        status="stopped", finish_reason="stopped"
                    )
                )
                stop_updated.set()
                release_stop.wait(10)
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            errors.append(error)
        finally:
            connections.close_all()

    def complete() -> None:
        try:
            complete_answer(message_id)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            connections.close_all()

    stopper = threading.Thread(target=stop_in_a_transaction)
    stopper.start()
    assert stop_updated.wait(10)
    finisher = threading.Thread(target=complete)
    finisher.start()
    try:
        assert wait_for_a_lock_wait(connections["default"].settings_dict["NAME"])
    finally:
        release_stop.set()
        stopper.join(10)
        finisher.join(10)

    assert errors == []
    assert stopped_rows == [1]  # the stop was confirmed to whoever asked for it
    answer.refresh_from_db()
    assert (answer.status, answer.finish_reason, answer.content) == (
        "stopped",
        "stopped",
        FULL_TEXT,
    )


def wait_for_a_lock_wait(database: str, timeout: float = 10.0) -> bool:
    """True once a session of `database` waits for a row lock."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = %s AND wait_event_type = 'Lock'",
                (database,),
            ).fetchone()
            if row and row[0]:
                return True
            time.sleep(0.02)
    return False


def test_finish_message_stores_an_error_with_its_text(alice: Any) -> None:
    """An error ending keeps the text that had arrived, its code, and no usage."""
    answer = streaming_answer(alice, "The wh")
    call(
        persistence.afinish_message,
        str(answer.pk),
        content="The whole",
        status="error",
        finish_reason="error",
        error_code="upstream_timeout",
    )

    answer.refresh_from_db()
    assert (answer.status, answer.error_code, answer.content) == (
        "error",
        "upstream_timeout",
        "The whole",
    )
    assert (answer.prompt_tokens, answer.completion_tokens) == (None, None)


def test_store_text_keeps_the_text_and_drops_the_models_metadata(alice: Any) -> None:
    """The fallback write stores text, status and code, and clears finish reason and usage."""
    answer = streaming_answer(alice)
    Message.objects.filter(pk=answer.pk).update(
        finish_reason="length", prompt_tokens=3, completion_tokens=4
    )

    call(
        persistence.astore_text,
        str(answer.pk),
        content=FULL_TEXT,
        status="error",
        error_code="internal_error",
    )

    answer.refresh_from_db()
    assert (answer.content, answer.status, answer.error_code, answer.finish_reason) == (
        FULL_TEXT,
        "error",
        "internal_error",
        "",
    )
    assert (answer.prompt_tokens, answer.completion_tokens) == (None, None)


def test_store_text_of_a_completed_answer_keeps_a_confirmed_stop(alice: Any) -> None:
    """As afinish_message: after a stop, a `complete` fallback stores the text and stays
    `stopped`; without a stop it stores `complete`."""
    stopped = streaming_answer(alice, "The")
    call(persistence.amark_stopped, str(stopped.pk))
    call(persistence.astore_text, str(stopped.pk), content=FULL_TEXT, status="complete")
    stopped.refresh_from_db()
    assert (stopped.status, stopped.finish_reason, stopped.content) == (
        "stopped",
        "stopped",
        FULL_TEXT,
    )

    running = streaming_answer(alice, "The")
    call(persistence.astore_text, str(running.pk), content=FULL_TEXT, status="complete")
    running.refresh_from_db()
    assert (running.status, running.content, running.error_code) == ("complete", FULL_TEXT, "")


# --- the stale sweep ---------------------------------------------------------------------------


def age(message: Message, *, updated: float | None = None, heartbeat: float | None = None) -> None:
    """Set how many seconds ago the message was saved and its heartbeat refreshed."""
    now = timezone.now()
    fields: dict[str, Any] = {}
    if updated is not None:
        fields["updated_at"] = now - timedelta(seconds=updated)
    if heartbeat is not None:
        fields["heartbeat_at"] = now - timedelta(seconds=heartbeat)
    Message.objects.filter(pk=message.pk).update(**fields)


def test_only_stale_streaming_answers_expire(alice: Any, settings: Any) -> None:
    """Streaming rows past the window (heartbeat, else last save) become `interrupted`
    with their text; fresh ones and finished ones are left alone."""
    settings.STREAM_STALE_AFTER_SECONDS = 30
    old_heartbeat = streaming_answer(alice, "kept text")
    age(old_heartbeat, heartbeat=60, updated=1)
    old_save = streaming_answer(alice, "saved")
    age(old_save, updated=60)
    live_heartbeat = streaming_answer(alice)
    age(live_heartbeat, heartbeat=5, updated=600)  # a heartbeat proves its producer lives
    fresh = streaming_answer(alice)
    finished = streaming_answer(alice)
    Message.objects.filter(pk=finished.pk).update(status="complete")
    age(finished, updated=600)

    assert persistence.expire_stale_streaming() == 2

    statuses = {m.pk: (m.status, m.content) for m in Message.objects.filter(role="assistant")}
    assert statuses == {
        old_heartbeat.pk: ("interrupted", "kept text"),
        old_save.pk: ("interrupted", "saved"),
        live_heartbeat.pk: ("streaming", ""),
        fresh.pk: ("streaming", ""),
        finished.pk: ("complete", ""),
    }
    expired = Message.objects.get(pk=old_save.pk)
    assert (expired.finish_reason, expired.error_code) == ("interrupted", "server_restarting")


def test_the_sweep_is_scoped_to_the_conversations_given(alice: Any, settings: Any) -> None:
    """With conversation ids, stale answers of other conversations stay `streaming`."""
    settings.STREAM_STALE_AFTER_SECONDS = 30
    here = streaming_answer(alice)
    elsewhere = prepare(alice, "other", new_conversation=True)
    there = Message.objects.get(pk=elsewhere.assistant_message_id)
    age(here, updated=60)
    age(there, updated=60)

    assert persistence.expire_stale_streaming([here.conversation_id]) == 1
    assert persistence.expire_stale_streaming([]) == 0

    here.refresh_from_db()
    there.refresh_from_db()
    assert (here.status, there.status) == ("interrupted", "streaming")
    assert call(persistence.aexpire_stale_streaming) == 1
    there.refresh_from_db()
    assert there.status == "interrupted"


# --- an orphaned answer ---------------------------------------------------------------------


def test_an_orphan_takes_the_logged_text_when_it_is_ahead(alice: Any) -> None:
    """The event log's text (at least as long as the stored text) replaces it."""
    answer = streaming_answer(alice, "The whole")

    ending = call(persistence.ainterrupt_orphan, str(answer.pk), logged_text=FULL_TEXT)
    snapshot = ending.snapshot

    answer.refresh_from_db()
    assert ending.ended_here
    assert (answer.status, answer.finish_reason, answer.error_code, answer.content) == (
        "interrupted",
        "interrupted",
        "interrupted",
        FULL_TEXT,
    )
    assert (snapshot.status, snapshot.content, snapshot.id) == (
        "interrupted",
        FULL_TEXT,
        str(answer.pk),
    )


def test_an_orphan_never_loses_stored_text_longer_than_the_log(alice: Any) -> None:
    """A shorter logged text is ignored: the stored text stays, the answer ends."""
    answer = streaming_answer(alice, FULL_TEXT)

    ending = call(persistence.ainterrupt_orphan, str(answer.pk), logged_text="The")
    snapshot = ending.snapshot

    answer.refresh_from_db()
    assert ending.ended_here
    assert (answer.status, answer.finish_reason, answer.content) == (
        "interrupted",
        "interrupted",
        FULL_TEXT,
    )
    assert snapshot.content == FULL_TEXT


def test_an_answer_expired_by_the_sweep_still_gets_the_logged_text(alice: Any) -> None:
    """`interrupted` by the stale sweep is still open to the longer logged text."""
    answer = streaming_answer(alice, "The")
    Message.objects.filter(pk=answer.pk).update(status="interrupted", error_code="x")

    ending = call(persistence.ainterrupt_orphan, str(answer.pk), logged_text=FULL_TEXT)

    answer.refresh_from_db()
    assert not ending.ended_here  # the sweep ended it (and counted it)
    assert (answer.status, answer.content, answer.error_code) == (
        "interrupted",
        FULL_TEXT,
        "interrupted",
    )


@pytest.mark.parametrize("status", ["complete", "stopped", "error"])
def test_an_answer_that_ended_keeps_its_state(alice: Any, status: str) -> None:
    """complete, stopped and error are final: neither status nor text change."""
    answer = streaming_answer(alice, "The")
    Message.objects.filter(pk=answer.pk).update(status=status, finish_reason="r")

    ending = call(persistence.ainterrupt_orphan, str(answer.pk), logged_text=FULL_TEXT)
    snapshot = ending.snapshot

    answer.refresh_from_db()
    assert not ending.ended_here
    assert (answer.status, answer.finish_reason, answer.content) == (status, "r", "The")
    assert (snapshot.status, snapshot.content) == (status, "The")


def test_an_orphan_that_was_deleted_is_none(alice: Any) -> None:
    """A message deleted meanwhile (conversation cleared) gives None."""
    message_id = str(streaming_answer(alice).pk)
    Message.objects.filter(pk=message_id).delete()

    assert call(persistence.ainterrupt_orphan, message_id, logged_text=FULL_TEXT) is None


# --- reading an answer --------------------------------------------------------------------------


def test_the_owner_reads_an_answer_with_its_question_and_usage(alice: Any) -> None:
    """The snapshot names the question, the question's parent and the usage totals."""
    first = prepare(alice, "one")
    complete_with_finish_message(
        first.assistant_message_id,
        content="answer",
        usage={"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7},
    )
    second = prepare(alice, "two")

    done = call(
        persistence.aget_owned_assistant_message, alice.pk, message_id=first.assistant_message_id
    )
    assert (done.content, done.status, done.finish_reason) == ("answer", "complete", "stop")
    assert done.usage == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    assert (done.user_message_id, done.parent_id) == (first.user_message_id, None)
    live = call(
        persistence.aget_owned_assistant_message, alice.pk, message_id=second.assistant_message_id
    )
    assert (live.status, live.usage, live.model) == ("streaming", None, "answering:default")
    assert (live.user_message_id, live.parent_id) == (
        second.user_message_id,
        first.assistant_message_id,
    )


def test_reading_someone_elses_or_a_question_is_not_found(alice: Any, bob: Any) -> None:
    """Another user's answer, a question, a malformed and an unknown id: all NotFound."""
    bobs = prepare(bob, "q")
    alices = prepare(alice, "q")

    for user, message_id in (
        (alice, bobs.assistant_message_id),
        (alice, alices.user_message_id),
        (alice, "nope"),
        (alice, "00000000-0000-4000-8000-000000000000"),
    ):
        with pytest.raises(NotFound):
            call(persistence.aget_owned_assistant_message, user.pk, message_id=message_id)
    own = call(
        persistence.aget_owned_assistant_message, bob.pk, message_id=bobs.assistant_message_id
    )
    assert own.conversation_id == bobs.conversation_id


def test_reading_an_answer_whose_producer_died_ends_it(alice: Any, settings: Any) -> None:
    """A stale `streaming` answer is read as `interrupted` (and stored so)."""
    settings.STREAM_STALE_AFTER_SECONDS = 30
    answer = streaming_answer(alice, "partial")
    age(answer, updated=120)

    snapshot = call(persistence.aget_owned_assistant_message, alice.pk, message_id=str(answer.pk))

    assert (snapshot.status, snapshot.content) == ("interrupted", "partial")
    answer.refresh_from_db()
    assert answer.status == "interrupted"

"""How many SQL statements a stream start costs, pinned (not timed): under load each one
is a wait for the GIL on a database thread, so a start's latency grows with their number
(bench/README.md). A change that adds one must change the figure here, on purpose.

Counted with Django's CaptureQueriesContext on the sync functions the core runs on its
database threads, BEGIN and COMMIT left out (how each database logs them differs)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ai_features.auth.tokens import get_user_for_session, mint_stream_token, verify_stream_token
from ai_features.chat import persistence
from ai_features.chat.requests import ChatRequest
from ai_features.models import Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("unit_database")]

# The sync function under `db_task` (functools.wraps keeps it as __wrapped__).
prepare_chat = persistence.aprepare_chat.__wrapped__


def statements(unit: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        result = unit(*args, **kwargs)
    return result, [q["sql"] for q in captured.captured_queries]


def start(user: Any, **fields: Any) -> tuple[persistence.PreparedChat, list[str]]:
    request = ChatRequest(**{"message": "Hello?", **fields})
    return statements(prepare_chat, user.pk, request=request, model_for=lambda m: "model")


def without_transaction(sql: list[str]) -> list[str]:
    """The statements between BEGIN (SQLite: BEGIN IMMEDIATE) and COMMIT."""
    return [s for s in sql if s not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT")]


def test_a_start_in_the_latest_conversation_sends_five_statements(alice: Any) -> None:
    """Lock the conversation, read its messages, store question and answer, move the leaf."""
    start(alice)
    prepared, sql = start(alice)

    assert len(without_transaction(sql)) == 5, sql
    assert Message.objects.filter(conversation_id=prepared.conversation_id).count() == 4


def test_a_new_conversation_does_not_read_its_messages(alice: Any) -> None:
    """Made in the same transaction, it has none: (look for the latest,) make it, store the
    two messages, move the leaf."""
    for fields, count in (({}, 5), ({"new_conversation": True}, 4)):
        _, sql = start(alice, **fields)
        assert len(without_transaction(sql)) == count, (fields, sql)
        assert not any('FROM "ai_features_message"' in s for s in sql), sql


def test_a_regeneration_reads_its_conversation_once(alice: Any) -> None:
    """The answer, its conversation locked (and kept), the tree, the new answer, the leaf."""
    first, _ = start(alice)
    _, sql = start(alice, message="", regenerate_message_id=first.assistant_message_id)

    assert len(without_transaction(sql)) == 5, sql
    assert sum('FROM "ai_features_conversation"' in s for s in sql) == 1, sql


def test_authentication_reads_the_session_and_the_user(alice: Any) -> None:
    """Bearer token or cookie: Django's session store and get_user, one query each."""
    client = Client()
    client.force_login(alice)
    session_key = client.session.session_key

    user, sql = statements(verify_stream_token, mint_stream_token(session_key, alice.pk))
    assert user == alice and len(sql) == 2, sql
    user, sql = statements(get_user_for_session, session_key)
    assert user == alice and len(sql) == 2, sql


def test_an_answer_that_ends_first_is_stored_in_one_statement(alice: Any) -> None:
    """The usual ending: one UPDATE … WHERE status = 'streaming', atomic on its own, with no
    transaction around it (on PostgreSQL, BEGIN and COMMIT would be two round trips more)."""
    prepared, _ = start(alice)
    finish = persistence.afinish_message.__wrapped__
    sent: list[tuple[str, bool]] = []

    def record(execute: Any, sql: str, *args: Any) -> Any:
        sent.append((sql.split()[0], connection.in_atomic_block))
        return execute(sql, *args)

    with connection.execute_wrapper(record):
        assert finish(prepared.assistant_message_id, content="Hi", status="complete") is None
    assert sent == [("UPDATE", False)]
    assert Message.objects.get(pk=prepared.assistant_message_id).content == "Hi"

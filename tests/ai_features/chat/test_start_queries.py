"""How many SQL statements a stream start and an ending cost, pinned (not timed): each is a
round trip, and on a database thread a wait for the GIL as well (bench/README.md), so a
start's latency grows with their number. A change that adds one must change the figure
here, on purpose.

Both stores (chat/start_store.py) are counted: the ORM's with Django's CaptureQueriesContext
(on SQLite and PostgreSQL), the event loop's by recording what its psycopg connection is
asked to execute (PostgreSQL). BEGIN and COMMIT are left out (how each logs them differs)."""

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
from tests.support.loop_db import call, loop_statements

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("unit_database")]


def statements(unit: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        result = unit(*args, **kwargs)
    return result, [q["sql"] for q in captured.captured_queries]


def without_transaction(sql: list[str]) -> list[str]:
    """The statements between BEGIN (SQLite: BEGIN IMMEDIATE) and COMMIT."""
    return [s for s in sql if s not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT")]


ENDING = {
    "content": "Hi",
    "status": "complete",
    "finish_reason": "",
    "error_code": "",
    "prompt_tokens": None,
    "completion_tokens": None,
}


class TestTheOrmStore:
    """Django's ORM on a database thread: SQLite, and callers without a loop pool."""

    def start(self, user: Any, **fields: Any) -> tuple[persistence.PreparedChat, list[str]]:
        chat = ChatRequest(**{"message": "Hello?", **fields})
        prepared, sql = statements(
            persistence.prepare_chat, user.pk, request=chat, model_for=lambda m: "model"
        )
        return prepared, without_transaction(sql)

    def end(self, message_id: str) -> list[tuple[str, bool]]:
        """The first ending's statements: (first word, inside a transaction)."""
        sent: list[tuple[str, bool]] = []

        def record(execute: Any, sql: str, *args: Any) -> Any:
            sent.append((sql.split()[0], connection.in_atomic_block))
            return execute(sql, *args)

        with connection.execute_wrapper(record):
            assert persistence._store_ending(message_id, dict(ENDING)) is None
        return sent

    def test_a_start_in_the_latest_conversation_sends_four_statements(self, alice: Any) -> None:
        """Lock the conversation, read its messages, move the leaf (only from the one
        read), store question and answer (one INSERT)."""
        self.start(alice)
        prepared, sql = self.start(alice)

        assert len(sql) == 4, sql
        assert sum(s.startswith("INSERT") for s in sql) == 1, sql
        assert Message.objects.filter(conversation_id=prepared.conversation_id).count() == 4

    def test_a_new_conversation_does_not_read_its_messages(self, alice: Any) -> None:
        """Made with its leaf named at once (foreign keys are checked at commit): (look for
        the latest,) make it, store the two messages."""
        for fields, count in (({}, 3), ({"new_conversation": True}, 2)):
            _, sql = self.start(alice, **fields)
            assert len(sql) == count, (fields, sql)
            assert not any(s.startswith("SELECT") and "ai_features_message" in s for s in sql)

    def test_a_regeneration_reads_its_conversation_once(self, alice: Any) -> None:
        """The answer with its conversation locked (one statement), the tree, the leaf, the
        new answer."""
        first, _ = self.start(alice)
        _, sql = self.start(alice, message="", regenerate_message_id=first.assistant_message_id)

        assert len(sql) == 4, sql
        selects = [s for s in sql if s.startswith("SELECT")]
        assert sum("ai_features_conversation" in s for s in selects) == 1, sql

    def test_an_answer_that_ends_first_is_stored_in_one_statement(self, alice: Any) -> None:
        """The usual ending: one UPDATE … WHERE status = 'streaming', atomic on its own,
        with no transaction around it (on PostgreSQL, BEGIN and COMMIT would be two round
        trips more)."""
        prepared, _ = self.start(alice)

        assert self.end(prepared.assistant_message_id) == [("UPDATE", False)]
        assert Message.objects.get(pk=prepared.assistant_message_id).content == "Hi"


@pytest.mark.postgres_only
class TestTheLoopStore(TestTheOrmStore):
    """The stream service's own path on PostgreSQL (chat/pg.py): a read and a write, each
    one statement in autocommit, no transaction around them."""

    def start(self, user: Any, **fields: Any) -> tuple[persistence.PreparedChat, list[str]]:
        chat = ChatRequest(**{"message": "Hello?", **fields})
        with loop_statements() as sent:
            prepared = call(
                persistence.aprepare_chat, user.pk, request=chat, model_for=lambda m: "m"
            )
        assert sent and not any(in_transaction for _, in_transaction in sent), sent
        return prepared, [sql for sql, _ in sent]

    def end(self, message_id: str) -> list[tuple[str, bool]]:
        with loop_statements() as sent:
            ending = call(persistence.afinish_message, message_id, content="Hi", status="complete")
        assert ending is None
        return [(sql.split()[0], in_transaction) for sql, in_transaction in sent]

    def test_a_start_in_the_latest_conversation_sends_four_statements(self, alice: Any) -> None:
        """The conversation with its messages (one SELECT), then the leaf moved and the
        question and answer stored (one statement: WITH … UPDATE … INSERT)."""
        self.start(alice)
        prepared, sql = self.start(alice)

        assert [s.split()[0] for s in sql] == ["SELECT", "WITH"], sql
        assert Message.objects.filter(conversation_id=prepared.conversation_id).count() == 4

    def test_a_new_conversation_does_not_read_its_messages(self, alice: Any) -> None:
        """(Look for the latest,) then make it with its two messages in one statement."""
        for fields, first_words in (
            ({}, ["SELECT", "WITH"]),
            ({"new_conversation": True}, ["WITH"]),
        ):
            prepared, sql = self.start(alice, **fields)
            assert [s.split()[0] for s in sql] == first_words, (fields, sql)
            assert Message.objects.filter(conversation_id=prepared.conversation_id).count() == 2

    def test_a_regeneration_reads_its_conversation_once(self, alice: Any) -> None:
        """The answer, its conversation and that one's messages in one SELECT; the write."""
        first, _ = self.start(alice)
        _, sql = self.start(alice, message="", regenerate_message_id=first.assistant_message_id)

        assert [s.split()[0] for s in sql] == ["SELECT", "WITH"], sql


def test_authentication_reads_the_session_and_the_user(alice: Any) -> None:
    """Bearer token or cookie: Django's session store and get_user, one query each."""
    client = Client()
    client.force_login(alice)
    session_key = client.session.session_key

    user, sql = statements(verify_stream_token, mint_stream_token(session_key, alice.pk))
    assert user == alice and len(sql) == 2, sql
    user, sql = statements(get_user_for_session, session_key)
    assert user == alice and len(sql) == 2, sql

"""c3-app's JSON API and streaming fallback, in process (Django's test client): whatever
a client sends in a query, header, path or body field, the answer is never a 5xx; and the
two deletes (one conversation's history, everything) need exactly what they say."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from ai_features.models import Conversation, Message
from tests.support.odd_input import (
    IN_PROCESS,
    any_text,
    assert_not_5xx,
    header_text,
    ids,
    json_values,
    number_text,
    path_id,
    url_text,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner_client(transactional_db: None) -> Client:
    """Django's test client logged in as a user who owns one conversation."""
    user = get_user_model().objects.create_user("prop")
    conversation = Conversation.objects.create(owner=user, title="kept")
    Message.objects.create(conversation=conversation, role="user", content="kept")
    client = Client()
    client.force_login(user)
    return client


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()  # ASCII escapes carry lone surrogates too


# --- properties: never a 5xx ------------------------------------------------------------------


@IN_PROCESS
@given(conversation_id=url_text, limit=number_text, method=st.sampled_from(["get", "delete"]))
def test_history_query_fields(owner_client: Client, conversation_id: str, limit: str, method: str):
    response = getattr(owner_client, method)(
        "/api/ai/chat/history/?"
        + f"conversation_id={quote(conversation_id, safe='')}&limit={quote(limit, safe='')}"
    )
    assert_not_5xx(response)
    assert Conversation.objects.filter(title="kept").exists() or method == "delete"


@IN_PROCESS
@given(
    method=st.sampled_from(["post", "delete"]),
    body=st.one_of(
        st.binary(max_size=200),
        st.fixed_dictionaries({"title": json_values}).map(json_bytes),
        st.fixed_dictionaries({"confirm": json_values}).map(json_bytes),
    ),
)
def test_conversation_list_bodies(owner_client: Client, method: str, body: bytes) -> None:
    response = owner_client.generic(
        method.upper(), "/api/ai/conversations/", data=body, content_type="application/json"
    )
    assert_not_5xx(response)
    if method == "delete" and body != b'{"confirm": "delete_all"}':
        assert response.status_code == 400
        assert Conversation.objects.filter(title="kept").exists()


@IN_PROCESS
@given(
    conversation_id=ids,
    method=st.sampled_from(["get", "patch", "delete"]),
    body=st.fixed_dictionaries({"title": json_values}).map(json_bytes) | st.binary(max_size=100),
)
def test_conversation_detail_path_and_body(
    owner_client: Client, conversation_id: str, method: str, body: bytes
) -> None:
    response = owner_client.generic(
        method.upper(),
        f"/api/ai/conversations/{path_id(conversation_id)}/",
        data=body,
        content_type="application/json",
    )
    assert_not_5xx(response)


@IN_PROCESS
@given(message_id=ids, header=header_text, query=number_text)
def test_resume_path_header_and_query(
    owner_client: Client, message_id: str, header: str, query: str
) -> None:
    response = owner_client.get(
        f"/api/ai/chat/stream/{path_id(message_id)}/?last_event_id={quote(query, safe='')}",
        headers={"Last-Event-ID": header},
    )
    assert_not_5xx(response)


@IN_PROCESS
@given(message_id=ids)
def test_stop_path(owner_client: Client, message_id: str) -> None:
    assert_not_5xx(owner_client.post(f"/api/ai/chat/stream/{path_id(message_id)}/stop/"))


# Every field of the body, with a conversation id that never names a conversation: nothing
# here may start a generation (an unknown conversation ends the request before the model).
stream_bodies = st.one_of(
    st.binary(max_size=200).filter(lambda b: not b.lstrip().startswith(b"{")),
    st.fixed_dictionaries(
        {"message": json_values, "include_history": json_values, "conversation_id": any_text}
    ).map(json_bytes),
)


@IN_PROCESS
@given(body=stream_bodies)
def test_stream_body_fields(owner_client: Client, body: bytes) -> None:
    response = owner_client.post("/api/ai/chat/stream/", data=body, content_type="application/json")
    assert_not_5xx(response)


# --- the deletes --------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?conversation_id=", "?conversation_id=abc"])
def test_clearing_history_without_a_valid_id_deletes_nothing(owner_client: Client, query: str):
    response = owner_client.delete("/api/ai/chat/history/" + query)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert Message.objects.filter(content="kept").exists()


def test_deleting_everything_takes_the_confirmation(owner_client: Client) -> None:
    refused = owner_client.delete(
        "/api/ai/conversations/", data=b'{"confirm": "DELETE_ALL"}', content_type="application/json"
    )
    assert refused.status_code == 400
    done = owner_client.delete(
        "/api/ai/conversations/", data=b'{"confirm": "delete_all"}', content_type="application/json"
    )
    assert done.status_code == 200
    assert not Conversation.objects.exists()

"""The stream service's routes in process (Starlette's TestClient, lifespan included):
whatever a client sends in a query, header, path or body field, the answer is never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from ai_features.auth.tokens import mint_stream_token
from ai_features.stream_app.app import create_app
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
def token(transactional_db: None) -> str:
    user = get_user_model().objects.create_user("prop")
    browser = Client()
    browser.force_login(user)
    return mint_stream_token(browser.session.session_key, user.pk)


@pytest.fixture
def stream_client(token: str) -> Iterator[TestClient]:
    """The stream service in process (Starlette's TestClient), started once `token`'s user and
    session are in the database."""
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


def latin1(value: str) -> bytes:
    return value.encode("latin-1")


# Every field of the body, with a conversation id that never names a conversation: nothing
# here may start a generation (an unknown conversation ends the request before the model).
stream_bodies = st.one_of(
    st.binary(max_size=200).filter(lambda b: not b.lstrip().startswith(b"{")),
    st.fixed_dictionaries(
        {"message": json_values, "include_history": json_values, "conversation_id": any_text}
    ).map(lambda value: json.dumps(value).encode()),
)


@IN_PROCESS
@given(body=stream_bodies, authorization=st.none() | header_text)
def test_stream_body_and_authorization(
    stream_client: TestClient, token: str, body: bytes, authorization: str | None
) -> None:
    auth = f"Bearer {token}" if authorization is None else authorization
    response = stream_client.post(
        "/api/ai/chat/stream/",
        content=body,
        headers={"Authorization": latin1(auth), "Content-Type": "application/json"},
    )
    assert_not_5xx(response)


@IN_PROCESS
@given(message_id=ids, header=header_text, query=number_text, query_token=url_text)
def test_resume_path_header_and_query(
    stream_client: TestClient,
    token: str,
    message_id: str,
    header: str,
    query: str,
    query_token: str,
) -> None:
    response = stream_client.get(
        f"/api/ai/chat/stream/{path_id(message_id)}/"
        f"?last_event_id={quote(query, safe='')}&token={quote(query_token, safe='')}",
        headers={"Authorization": f"Bearer {token}", "Last-Event-ID": latin1(header)},
    )
    assert_not_5xx(response)


@IN_PROCESS
@given(message_id=ids, cookie=header_text)
def test_stop_path_and_cookie(stream_client: TestClient, token: str, message_id: str, cookie: str):
    response = stream_client.post(
        f"/api/ai/chat/stream/{path_id(message_id)}/stop/",
        headers={"Cookie": latin1(f"sessionid={cookie}"), "Origin": "http://testserver"},
    )
    assert_not_5xx(response)
    response = stream_client.post(
        f"/api/ai/chat/stream/{path_id(message_id)}/stop/",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_not_5xx(response)

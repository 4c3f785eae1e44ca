"""Issue 8 items 2 and 3 on real servers and both databases: odd input is a clear 4xx, never
a 500 (digits that int() refuses, lone surrogates, NUL, bidi controls), and a missing or
malformed conversation id never deletes everything."""

from __future__ import annotations

import json
import uuid

import httpx
import hypothesis
import pytest
from hypothesis import strategies as st

from tests.support import odd_input
from tests.support.fake_upstream import directive

from .helpers import LEAK_MARKERS

pytestmark = pytest.mark.integration

VIAS = ["stream", "app"]
# "²" is a digit to str.isdigit() but not to int(); 0xB2 is its latin-1 byte.
ODD_DIGITS = ["²", "١٢", "１"]


def assert_clear_400(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    body = response.text
    for marker in LEAK_MARKERS:
        assert marker not in body


def resume_raw(user, message_id: str, via: str, *, header: bytes | None, query: str | None):
    headers: dict[str, str | bytes] = dict(user.headers_for(via))
    if via == "stream":
        headers["Authorization"] = f"Bearer {user.token}"
    if header is not None:
        headers["Last-Event-ID"] = header
    params = {"last_event_id": query} if query is not None else {}
    with user.http_for(via, 10) as http:
        return http.get(
            f"{user.base_url(via)}/api/ai/chat/stream/{message_id}/", headers=headers, params=params
        )


@pytest.mark.parametrize("via", VIAS)
def test_last_event_id_with_digits_int_refuses_is_a_400(stack, make_user, via):
    user = make_user()
    answer = user.post_stream({"message": "hi " + directive(tokens=2)}, via=via)
    assert answer.final.type == "done"

    assert_clear_400(resume_raw(user, answer.message_id, via, header=b"\xb2", query=None))
    for odd in ODD_DIGITS:
        assert_clear_400(resume_raw(user, answer.message_id, via, header=None, query=odd))
    # A plain number still resumes.
    ok = resume_raw(user, answer.message_id, via, header=b"2", query=None)
    assert ok.status_code == 200


def test_history_limit_with_digits_int_refuses_is_a_400(stack, make_user):
    user = make_user()
    for odd in [*ODD_DIGITS, "9" * 3000, "-1", "1.5"]:
        assert_clear_400(user.client.http.get("/api/ai/chat/history/", params={"limit": odd}))
    assert user.client.http.get("/api/ai/chat/history/", params={"limit": "3"}).status_code == 200


TITLES = {
    # raw JSON text of the title -> what is stored
    '"a\\ud800b"': "a\ufffdb",
    '"a\\udc00"': "a\ufffd",
    '"a\\u0000b"': "a\ufffdb",
    '"\\ud83d\\ude00 ok"': "\U0001f600 ok",
    '"invoice\\u202egpj.exe"': "invoicegpj.exe",
    '"x\\u2066y\\u2069z\\u202a"': "xyz",
}


@pytest.mark.parametrize("raw", list(TITLES))
def test_odd_titles_are_stored_cleaned(stack, make_user, raw):
    user = make_user()
    body = ('{"title": ' + raw + "}").encode()
    created = user.client.api(
        "POST", "/api/ai/conversations/", content=body, headers={"Content-Type": "application/json"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["title"] == TITLES[raw]
    conversation_id = created.json()["id"]
    renamed = user.client.api(
        "PATCH",
        f"/api/ai/conversations/{conversation_id}/",
        content=body.replace(b'"title": "', b'"title": "re '),
        headers={"Content-Type": "application/json"},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["title"] == "re " + TITLES[raw]
    assert [c["title"] for c in user.conversations()] == ["re " + TITLES[raw]]


def test_a_first_message_with_bidi_controls_gives_a_neutral_title(stack, make_user):
    user = make_user()
    answer = user.post_stream({"message": "pay\u202eusd\u2066 " + directive(tokens=1)})
    assert answer.final.type == "done"
    (conversation,) = user.conversations()
    assert "\u202e" not in conversation["title"] and "\u2066" not in conversation["title"]
    assert conversation["title"].startswith("payusd ")


def two_conversations(user) -> list[str]:
    """Two conversations of one question and answer each."""
    ids = []
    for _ in range(2):
        created = user.client.api("POST", "/api/ai/conversations/", json={"title": "t"})
        conversation_id = created.json()["id"]
        answer = user.post_stream(
            {"message": "keep me " + directive(tokens=1), "conversation_id": conversation_id}
        )
        assert answer.final.type == "done"
        ids.append(conversation_id)
    return ids


@pytest.mark.parametrize(
    "params",
    [{}, {"conversation_id": ""}, {"conversation_id": "not-a-uuid"}, {"conversation_id": "\x00"}],
    ids=["missing", "empty", "malformed", "nul"],
)
def test_clearing_history_without_a_valid_id_is_a_400_and_deletes_nothing(stack, make_user, params):
    user = make_user()
    two_conversations(user)
    before = user.message_count(), len(user.conversations())

    response = user.client.api("DELETE", "/api/ai/chat/history/", params=params)

    assert_clear_400(response)
    assert response.json()["error"]["code"] == "invalid_request"
    assert (user.message_count(), len(user.conversations())) == before


def test_clearing_one_conversations_history_keeps_the_others(stack, make_user):
    user = make_user()
    target, _ = two_conversations(user)
    assert user.history(target)

    response = user.client.api(
        "DELETE", "/api/ai/chat/history/", params={"conversation_id": target}
    )

    assert response.status_code == 200
    assert response.json()["deleted"] == 2
    assert user.history(target) == []
    assert user.message_count() == 2
    unknown = user.client.api(
        "DELETE", "/api/ai/chat/history/", params={"conversation_id": str(uuid.uuid4())}
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b'{"confirm": "yes"}', b'{"confirm": true}', b'["delete_all"]', b"{not json"],
    ids=["no-body", "empty-object", "wrong-word", "true", "not-an-object", "not-json"],
)
def test_deleting_every_conversation_needs_the_explicit_confirmation(stack, make_user, body):
    user = make_user()
    two_conversations(user)
    before = user.message_count(), len(user.conversations())

    response = user.client.api(
        "DELETE",
        "/api/ai/conversations/",
        content=body,
        headers={"Content-Type": "application/json"},
    )

    assert_clear_400(response)
    assert (user.message_count(), len(user.conversations())) == before


def test_deleting_every_conversation_with_the_confirmation(stack, make_user):
    user, other = make_user(), make_user()
    two_conversations(user)
    two_conversations(other)

    response = user.client.api(
        "DELETE", "/api/ai/conversations/", content=json.dumps({"confirm": "delete_all"})
    )

    assert response.status_code == 200
    assert response.json()["deleted"] > 0
    assert user.conversations() == []
    assert len(other.conversations()) == 2  # nobody else's


# --- a short property pass against the real servers (breadth is in the in-process tests) ------

REAL_SERVERS = hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def odd_user(make_user):
    return make_user()


@REAL_SERVERS
@hypothesis.given(
    via=st.sampled_from(VIAS),
    message_id=odd_input.ids,
    header=odd_input.header_text,
    query=odd_input.number_text,
    body=st.fixed_dictionaries(
        {"message": odd_input.json_values, "conversation_id": odd_input.any_text}
    ),
)
def test_odd_fields_never_give_a_5xx_on_the_real_servers(
    stack, odd_user, via, message_id, header, query, body
):
    user = odd_user
    base = user.base_url(via)
    path_id = odd_input.path_id(message_id)
    with user.http_for(via, 10) as http:
        responses = [
            http.get(
                f"{base}/api/ai/chat/stream/{path_id}/",
                params={"last_event_id": query},
                headers={
                    **user.headers_for(via),
                    "Last-Event-ID": header.strip(" \t").encode("latin-1"),
                },
            ),
            http.post(f"{base}/api/ai/chat/stream/{path_id}/stop/", headers=user.headers_for(via)),
            http.post(
                f"{base}/api/ai/chat/stream/",
                content=json.dumps(body).encode(),
                headers={**user.headers_for(via), "Content-Type": "application/json"},
            ),
        ]
    responses += [
        user.client.http.get("/api/ai/chat/history/", params={"limit": query}),
        user.client.api("DELETE", "/api/ai/chat/history/", params={"conversation_id": query}),
        user.client.api(
            "PATCH",
            f"/api/ai/conversations/{path_id}/",
            content=json.dumps({"title": body["conversation_id"]}).encode(),
        ),
        user.client.api(
            "POST",
            "/api/ai/conversations/",
            content=json.dumps({"title": body["conversation_id"]}).encode(),
        ),
    ]
    for response in responses:
        assert response.status_code < 500, (response.request.url, response.text[:300])

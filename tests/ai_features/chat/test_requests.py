"""parse_chat_request: the body of POST /api/ai/chat/stream/ becomes a ChatRequest or an
InvalidRequest (400) — never any other exception, whatever the bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_features.chat.errors import InvalidRequest
from ai_features.chat.requests import ChatRequest, parse_chat_request

SMALL_LIMIT = 40


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


# --- examples ------------------------------------------------------------------------------


def test_minimal_request_gets_the_defaults() -> None:
    assert parse_chat_request(body({"message": "こんにちは"})) == ChatRequest(
        message="こんにちは", include_history=True, conversation_id=None
    )


def test_all_fields() -> None:
    parsed = parse_chat_request(
        body({"message": "hi", "include_history": False, "conversation_id": "abc"})
    )
    assert parsed == ChatRequest(message="hi", include_history=False, conversation_id="abc")


def test_message_is_kept_verbatim() -> None:
    message = "  two lines\nwith **markdown** and <b>html</b>  "
    assert parse_chat_request(body({"message": message})).message == message


def test_unknown_fields_are_ignored() -> None:
    parsed = parse_chat_request(body({"message": "hi", "temperature": 2, "extra": {"a": [1]}}))
    assert parsed == ChatRequest(message="hi")


def test_null_conversation_id_means_none() -> None:
    assert (
        parse_chat_request(body({"message": "hi", "conversation_id": None})).conversation_id is None
    )


@override_settings(CHAT_MAX_MESSAGE_CHARS=10)
def test_length_limit_counts_characters_not_bytes() -> None:
    assert parse_chat_request(body({"message": "あ" * 10})).message == "あ" * 10
    with pytest.raises(InvalidRequest, match="10"):
        parse_chat_request(body({"message": "あ" * 11}))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b'{"message": "hi",}',
        b"\xff\xfe\xfa",
        b'{"message": "\xff"}',
        b"[]",
        b'"message"',
        b"null",
        b"42",
        b"NaN",
        b"{}",
        b'{"message": null}',
        b'{"message": 42}',
        b'{"message": ["hi"]}',
        b'{"message": {"text": "hi"}}',
        b'{"message": ""}',
        b'{"message": "   \\n\\t "}',
        b'{"message": "\\u3000"}',
        b'{"message": "a\\u0000b"}',
        b'{"message": "\\ud800"}',
        b'{"message": "hi", "include_history": "false"}',
        b'{"message": "hi", "include_history": 0}',
        b'{"message": "hi", "include_history": null}',
        b'{"message": "hi", "conversation_id": 12}',
        b'{"message": "hi", "conversation_id": ["a"]}',
        b'{"message": "hi", "conversation_id": false}',
    ],
)
def test_invalid_bodies(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(raw)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_request"
    assert caught.value.message  # something to show the user


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b"{" + b'"a":{' * 50_000,
        b'{"message": "hi", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["open-arrays", "open-objects", "deep-but-closed"],
)
def test_deeply_nested_json_is_an_invalid_request(raw: bytes) -> None:
    # Well under the 1 MB body limit, yet deep enough to exhaust json's recursion.
    assert len(raw) < 1024 * 1024
    with pytest.raises(InvalidRequest):
        parse_chat_request(raw)


def test_message_over_the_default_limit() -> None:
    limit = django_settings.CHAT_MAX_MESSAGE_CHARS
    assert parse_chat_request(body({"message": "x" * limit})).message == "x" * limit
    with pytest.raises(InvalidRequest):
        parse_chat_request(body({"message": "x" * (limit + 1)}))


# --- properties ----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# Texts near the rules: blank, NUL, lone surrogates, around the (small) length limit.
messages = st.one_of(
    st.text(max_size=SMALL_LIMIT + 5),
    st.text(alphabet=" \t\n\r\u3000\u00a0\u2003", max_size=5),
    st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=3), st.text(max_size=3)),
    st.builds(lambda a: a + "\ud83d", st.text(max_size=3)),
    st.integers(SMALL_LIMIT - 1, SMALL_LIMIT + 1).map(lambda n: "y" * n),
    json_values,
)
request_like = st.fixed_dictionaries(
    {"message": messages},
    optional={
        "include_history": st.booleans() | json_values,
        "conversation_id": st.none() | st.text(max_size=40) | json_values,
        "unknown": json_values,
        "model": st.sampled_from(["fake", "other"]) | json_values,
        "language": st.sampled_from(["ja", "en", "fr"]) | json_values,
        "new_conversation": st.booleans() | json_values,
        "regenerate_message_id": st.none() | st.text(max_size=40) | json_values,
        "edit_message_id": st.none() | st.text(max_size=40) | json_values,
    },
)
KNOWN_FIELDS = {
    "message",
    "include_history",
    "conversation_id",
    "model",
    "language",
    "new_conversation",
    "regenerate_message_id",
    "edit_message_id",
}
MODELS = ["fake"]  # OPENAI_MODELS while these tests run


def encodings(value: Any) -> st.SearchStrategy[bytes]:
    """The same JSON as ASCII-escaped text, raw UTF-8 (lone surrogates become invalid
    bytes), or UTF-16 (json.loads detects it)."""
    return st.sampled_from(
        [
            json.dumps(value).encode(),
            json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"),
            json.dumps(value).encode("utf-16"),
        ]
    )


def expected_validity(raw: bytes) -> bool:
    """The contract, restated independently of the implementation."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    if not isinstance(data, dict):
        return False
    ids = [data.get(k) for k in ("conversation_id", "regenerate_message_id", "edit_message_id")]
    if not all(v is None or isinstance(v, str) for v in ids):
        return False
    _conversation_id, regenerate, edit = ids
    if regenerate is not None and edit is not None:
        return False
    if regenerate is None:  # with regenerate, `message` is ignored
        message = data.get("message")
        if not isinstance(message, str):
            return False
        if all(ch.isspace() for ch in message) or len(message) > SMALL_LIMIT:
            return False
        if "\x00" in message or any(0xD800 <= ord(ch) <= 0xDFFF for ch in message):
            return False
    if not isinstance(data.get("include_history", True), bool):
        return False
    new_conversation = data.get("new_conversation", False)
    if not isinstance(new_conversation, bool):
        return False
    if new_conversation and any(ids):
        return False
    if data.get("model") is not None and data.get("model") not in MODELS:
        return False
    return data.get("language") in (None, "ja", "en")


def check(raw: bytes) -> None:
    with override_settings(CHAT_MAX_MESSAGE_CHARS=SMALL_LIMIT, OPENAI_MODELS=MODELS):
        try:
            parsed = parse_chat_request(raw)
        except InvalidRequest:
            assert not expected_validity(raw), raw
            return
    assert expected_validity(raw), raw
    assert isinstance(parsed, ChatRequest)
    assert isinstance(parsed.message, str)
    assert isinstance(parsed.include_history, bool)
    assert parsed.conversation_id is None or isinstance(parsed.conversation_id, str)
    data = json.loads(raw)
    regenerate = data.get("regenerate_message_id")
    if regenerate is None:
        assert parsed.message.strip()
        assert len(parsed.message) <= SMALL_LIMIT
        parsed.message.encode("utf-8")  # storable
        assert "\x00" not in parsed.message
    assert parsed == ChatRequest(
        message="" if regenerate is not None else data["message"],
        include_history=data.get("include_history", True),
        conversation_id=data.get("conversation_id"),
        regenerate_message_id=regenerate,
        edit_message_id=data.get("edit_message_id"),
        model=data.get("model"),
        new_conversation=data.get("new_conversation", False),
        language=data.get("language"),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_invalid_request(raw: bytes) -> None:
    check(raw)


@settings(max_examples=300, deadline=None)
@given(json_values.flatmap(encodings))
def test_any_json_value_parses_or_raises_invalid_request(raw: bytes) -> None:
    check(raw)


@settings(max_examples=600, deadline=None)
@given(request_like.flatmap(encodings))
def test_request_like_objects_follow_the_contract(raw: bytes) -> None:
    check(raw)


@settings(deadline=None)
@given(
    st.text(min_size=1, max_size=SMALL_LIMIT).filter(lambda s: s.strip()),
    st.dictionaries(
        st.text().filter(lambda k: k not in KNOWN_FIELDS),
        json_values,
        max_size=5,
    ),
)
def test_unknown_fields_never_change_the_result(message: str, extra: dict[str, Any]) -> None:
    with override_settings(CHAT_MAX_MESSAGE_CHARS=SMALL_LIMIT):
        try:
            plain = parse_chat_request(body({"message": message}))
        except InvalidRequest:
            plain = None
        try:
            with_extra = parse_chat_request(body({**extra, "message": message}))
        except InvalidRequest:
            with_extra = None
    assert plain == with_extra

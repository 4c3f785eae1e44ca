"""Issue item 4: every upstream fault ends the stream with exactly one `error` event that
carries a stable code and a message safe to show, and the text that had arrived is stored
with status `error`. The faults are injected by the fake upstream's directives."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from ai_features.providers.base import ProviderError
from tests.support.coalesced import assert_ids_increase
from tests.support.fake_upstream import directive, expected_text

from .conftest import PROFILES
from .helpers import LEAK_MARKERS

pytestmark = pytest.mark.integration

OPENAI_TIMEOUT = float(PROFILES["faults"]["OPENAI_TIMEOUT"])
RETRIES = int(PROFILES["faults"]["OPENAI_MAX_RETRIES"])
HEARTBEAT = float(PROFILES["faults"]["STREAM_HEARTBEAT_SECONDS"])


def chunks(n: int) -> str:
    return "".join(f"tok{i} " for i in range(n))


@dataclass
class Fault:
    name: str
    fake: dict
    code: str
    stored_text: str
    requests: int  # upstream requests the fault costs (the SDK retries before any token)
    vias: tuple[str, ...] = ("stream", "app")
    # The error must come after this much silence (timeouts), in OPENAI_TIMEOUTs.
    silence: float = 0.0


FAULTS = [
    Fault(
        "first-token-too-late",
        {"first_delay": 3 * OPENAI_TIMEOUT},
        "upstream_timeout",
        "",
        1,
        vias=("stream",),
        silence=1,
    ),
    Fault(
        "hang-mid-stream",
        {"tokens": 8, "hang_after": 3},
        "upstream_timeout",
        chunks(3),
        1,
        silence=1,
    ),
    Fault(
        # No response headers within OPENAI_TIMEOUT: the SDK retries, then gives up.
        "headers-too-late",
        {"headers_delay": 3 * OPENAI_TIMEOUT},
        "upstream_timeout",
        "",
        1 + RETRIES,
        vias=("stream",),
        silence=1 + RETRIES,
    ),
    Fault("rate-limited", {"status": 429}, "upstream_rate_limited", "", 1 + RETRIES),
    Fault("server-error", {"status": 500}, "upstream_error", "", 1 + RETRIES),
    Fault("bad-key", {"status": 401}, "upstream_auth", "", 1),
    Fault("dropped", {"tokens": 8, "drop_after": 4}, "upstream_disconnected", chunks(4), 1),
    Fault("malformed", {"tokens": 8, "malformed_after": 2}, "upstream_bad_response", chunks(2), 1),
]
CASES = [
    pytest.param(fault, via, id=f"{fault.name}-{via}") for fault in FAULTS for via in fault.vias
]


def upstream_requests_for(stack, marker: str) -> int:
    return sum(
        marker in str(body.get("messages", [{}])[-1].get("content"))
        for body in stack.upstream.requests()
    )


def assert_safe_error(event, code: str, message_id: str) -> None:
    assert event.type == "error"
    assert event.data["code"] == code
    assert event.data["message_id"] == message_id
    # Stable: the catalogue's text for the code, and nothing from the exception.
    assert event.data["content"] == ProviderError.MESSAGES[code]
    for marker in LEAK_MARKERS:
        assert marker not in event.data["content"]


@pytest.mark.parametrize(("fault", "via"), CASES)
def test_upstream_fault_ends_the_stream_with_one_coded_error(stack, make_user, fault, via):
    user = make_user()
    marker = uuid.uuid4().hex
    message = f"{marker} " + directive(**fault.fake)

    result = user.post_stream({"message": message}, via=via)

    assert result.status == 200
    assert_ids_increase(result.ids)
    assert result.types[0] == "start"
    assert set(result.types[1:-1]) <= {"content"}
    assert result.ended_with_one_final()
    assert_safe_error(result.final, fault.code, result.message_id)
    assert result.text == fault.stored_text

    if fault.silence:
        # The timeout is OPENAI_TIMEOUT of silence, and pings kept the client's line open.
        last_news = max([e.at for e in result.events[:-1]])
        waited = result.final.at - last_news
        assert waited >= 0.9 * fault.silence * OPENAI_TIMEOUT
        assert waited < 2.5 * fault.silence * OPENAI_TIMEOUT + 1
        pings = [p for p in result.pings if last_news < p < result.final.at]
        assert len(pings) >= (fault.silence * OPENAI_TIMEOUT / HEARTBEAT) / 2

    stored = user.stored(result.conversation_id, result.message_id)
    assert stored["status"] == "error"
    assert stored["error_code"] == fault.code
    assert stored["content"] == fault.stored_text
    # The question is stored too, whatever became of the answer.
    assert [m["role"] for m in user.history(result.conversation_id)] == ["user", "assistant"]
    assert upstream_requests_for(stack, marker) == fault.requests
    assert "sk-test-never-logged" not in stack.logs()


@pytest.mark.parametrize("via", ["stream", "app"])
def test_server_error_before_the_first_token_is_retried(stack, make_user, via):
    user = make_user()
    marker = uuid.uuid4().hex
    message = f"{marker} " + directive(tokens=6, status=500, status_times=1, id=marker)

    result = user.post_stream({"message": message}, via=via)

    assert result.types[0] == "start" and result.final.type == "done"
    assert result.ended_with_one_final()
    assert result.text == expected_text(message)
    assert upstream_requests_for(stack, marker) == 2
    stored = user.stored(result.conversation_id, result.message_id)
    assert (stored["status"], stored["content"]) == ("complete", expected_text(message))


@pytest.mark.parametrize("via", ["stream", "app"])
def test_a_refused_request_does_not_turn_usage_off_for_later_answers(stack, make_user, via):
    """A 400 (e.g. a prompt the model refuses) is not "this server rejects stream_options"."""
    user = make_user()
    refused = user.post_stream({"message": "x " + directive(status=400)}, via=via)
    assert refused.final.data["code"] == "upstream_error"

    later = user.post_stream({"message": "y " + directive(tokens=4)}, via=via)

    assert later.final.type == "done"
    assert later.final.data["usage"] is not None
    assert later.final.data["usage"]["completion_tokens"] == 4
    history = user.history(later.conversation_id)
    assert [(m["status"], m["error_code"]) for m in history if m["role"] == "assistant"] == [
        ("error", "upstream_error"),
        ("complete", ""),
    ]


@pytest.fixture
def upstream_down(stack):
    """Stop the fake upstream (its port then refuses connections); start it again on the
    same port afterwards (BulkFakeUpstream keeps its port)."""
    stack.upstream.stop()
    yield
    stack.upstream.start()


@pytest.mark.parametrize("via", ["stream", "app"])
def test_upstream_unreachable(stack, make_user, upstream_down, via):
    user = make_user()
    result = user.post_stream({"message": "anyone? " + directive(tokens=3)}, via=via)

    assert result.types == ["start", "error"]
    assert result.ids == [1, 2]
    assert_safe_error(result.final, "upstream_unavailable", result.message_id)
    stored = user.stored(result.conversation_id, result.message_id)
    assert (stored["status"], stored["error_code"], stored["content"]) == (
        "error",
        "upstream_unavailable",
        "",
    )

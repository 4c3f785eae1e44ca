"""Logs of both real services: a request id on every line of a request, and no message
text, tokens or keys at INFO."""

from __future__ import annotations

import re
import time

import pytest

from tests.support.fake_upstream import directive, expected_text
from tests.support.test_env import TEST_ENV

pytestmark = pytest.mark.integration

REQUEST_ID = re.compile(r"\[req=([0-9a-f]{32})\]")


def _wait_for_log(stack, needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = stack.logs()
        if needle in logs:
            return logs
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never logged")


@pytest.mark.parametrize("via", ["stream", "app"])
def test_logs_carry_request_ids_and_no_secrets(stack, make_client, via):
    client = make_client()
    secret_text = f"my private question {via} 秘密の質問 " + directive(tokens=4)
    token = client.token()
    result = client.stream({"message": secret_text}, via=via, token=token)
    assert result.final.type == "done"
    message_id = result.message_id
    # Resume with the token in the query string, as EventSource does.
    resumed = client.resume(message_id, 1, token=token, query_token=True)
    assert resumed.text == expected_text(secret_text)

    logs = _wait_for_log(stack, f"chat finished message={message_id}")
    for secret in (
        "my private question",
        "秘密の質問",
        expected_text(secret_text).strip(),
        token,
        stack.env()["OPENAI_API_KEY"],
        TEST_ENV["SECRET_KEY"],
    ):
        assert secret not in logs

    started = next(
        line for line in logs.splitlines() if f"chat started message={message_id}" in line
    )
    finished = next(
        line for line in logs.splitlines() if f"chat finished message={message_id}" in line
    )
    start_id = REQUEST_ID.search(started).group(1)
    # The generation's own log lines carry the id of the request that started it.
    assert REQUEST_ID.search(finished).group(1) == start_id
    access = [
        line
        for line in logs.splitlines()
        if start_id in line and "POST /api/ai/chat/stream/ 200" in line
    ]
    assert len(access) == 1, "one access line per request, tagged with the same id"
    assert "INFO" in access[0]

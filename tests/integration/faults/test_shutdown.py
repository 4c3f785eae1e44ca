"""Issue item 7: graceful shutdown of the stream service, and repair after a hard kill.

SIGTERM: new streams are refused, answers that finish within STREAM_SHUTDOWN_GRACE_SECONDS
finish normally, the rest end with `error`/server_restarting and are stored `interrupted`
with their text. SIGKILL: the answer is left `streaming`, and becomes `interrupted` on the
next start of the service and whenever the history is read (STREAM_STALE_AFTER_SECONDS).

This module kills and restarts servers, so it has a stack of its own.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.coalesced import assert_ids_increase
from tests.support.fake_upstream import directive, expected_text

from .conftest import PROFILES
from .helpers import assert_replayed_as_interrupted, db_messages, read_until_cut, wait_until

pytestmark = pytest.mark.integration

STACK_PROFILE = "shutdown"
GRACE = float(PROFILES["shutdown"]["STREAM_SHUTDOWN_GRACE_SECONDS"])
STALE = float(PROFILES["shutdown"]["STREAM_STALE_AFTER_SECONDS"])
# Ten seconds of answer: far longer than the grace period.
LONG = directive(tokens=100, pace=0.1)


def ensure_running(stack) -> None:
    if stack.stream.process.poll() is not None:
        stack.stream.start()


def test_sigterm_finishes_short_answers_and_interrupts_long_ones(stack, make_user):
    ensure_running(stack)
    long_user, short_user, newcomer = make_user(), make_user(), make_user()
    short = "short " + directive(tokens=8, pace=0.1)
    long_seen: list = []
    short_seen: list = []

    with ThreadPoolExecutor(2) as pool:
        long_f = pool.submit(
            long_user.post_stream, {"message": "long " + LONG}, on_event=long_seen.append
        )
        wait_until(lambda: len(long_seen) >= 3, what="the long answer's first tokens")
        short_f = pool.submit(
            short_user.post_stream, {"message": short}, on_event=short_seen.append
        )
        wait_until(lambda: len(short_seen) >= 2, what="the short answer's first token")

        sigterm_at = time.monotonic()
        stack.stream.signal(signal.SIGTERM)
        wait_until(
            lambda: "Shutting down" in stack.stream.log_text(), timeout=5, what="uvicorn to stop"
        )
        # New streams are refused: the port is closed, or the core answers 503.
        try:
            refused = newcomer.post_whole({"message": "anyone? " + directive(tokens=2)})
        except httpx.ConnectError:
            pass
        else:
            assert refused.status == 503
            assert [(e.type, e.data["code"]) for e in refused.events] == [
                ("error", "server_restarting")
            ]

        long_result, short_result = long_f.result(timeout=30), short_f.result(timeout=30)

    # Within the grace period: finished normally.
    assert short_result.final.type == "done"
    assert short_result.final.data["finish_reason"] == "stop"
    assert short_result.text == expected_text(short)
    # Beyond it: one `error` event, server_restarting, after the grace period and soon after.
    assert long_result.ended_with_one_final()
    assert long_result.final.type == "error"
    assert long_result.final.data["code"] == "server_restarting"
    waited = long_result.final.at - sigterm_at
    assert 0.8 * GRACE <= waited < GRACE + 3, waited
    assert_ids_increase(long_result.ids)
    partial = long_result.text
    assert partial and expected_text(LONG).startswith(partial) and partial != expected_text(LONG)

    # The process exits by itself once its streams have ended.
    stack.stream.process.wait(timeout=GRACE + 10)
    # uvicorn re-raises the signal it handled once it is done, hence -SIGTERM.
    assert stack.stream.process.returncode in (0, -signal.SIGTERM)
    stored = long_user.stored(long_result.conversation_id, long_result.message_id)
    assert (stored["status"], stored["error_code"]) == ("interrupted", "server_restarting")
    assert stored["content"] == partial
    stored = short_user.stored(short_result.conversation_id, short_result.message_id)
    assert (stored["status"], stored["content"]) == ("complete", expected_text(short))
    assert newcomer.message_count() == 0

    stack.stream.start()
    _, streaming = db_messages(stack)
    assert streaming == 0
    # Resumed after the restart (empty log): from the database, text and all.
    replay = long_user.resume(long_result.message_id, long_result.final.id)
    assert replay.types == ["start", "content", "error"]
    assert replay.text == partial
    assert replay.final.data["code"] == "interrupted"


def _kill_mid_stream(stack, user) -> tuple[str, str, str]:
    """Start a long answer, let some text be saved, SIGKILL the stream service."""
    seen: list = []
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(read_until_cut, user, {"message": "doomed " + LONG}, seen)
        wait_until(lambda: len(seen) >= 4, what="some tokens")
        conversation_id, message_id = seen[0].data["conversation_id"], seen[0].data["message_id"]
        # Partial text reaches the database seconds apart, not only at the end.
        wait_until(lambda: user.stored(conversation_id, message_id)["content"], what="a save")
        stack.stream.signal(signal.SIGKILL)
        stack.stream.process.wait(timeout=10)
        cut = future.result(timeout=10)
    # The client saw no final event: the connection just broke.
    assert cut is None or cut.types[-1] not in ("done", "error")
    return conversation_id, message_id, expected_text(LONG)


def test_sigkill_leaves_nothing_streaming_for_long(stack, make_user):
    user = make_user()
    ensure_running(stack)

    # 1. Read through the history API once it is older than STREAM_STALE_AFTER_SECONDS.
    conversation_id, message_id, full = _kill_mid_stream(stack, user)
    rows, _ = db_messages(stack, message_id)
    assert rows[message_id]["status"] == "streaming"  # nobody was left to finish it
    saved = rows[message_id]["content"]
    assert saved and full.startswith(saved) and saved != full
    stored = wait_until(
        lambda: (m := user.stored(conversation_id, message_id))["status"] != "streaming" and m,
        timeout=STALE + 5,
        what="the history to repair the message",
    )
    assert (stored["status"], stored["error_code"]) == ("interrupted", "server_restarting")
    assert stored["content"] == saved

    # 2. Repaired by the next start of the service, before anyone reads it.
    stack.stream.start()
    conversation_id, message_id, full = _kill_mid_stream(stack, user)
    time.sleep(STALE + 0.2)  # the row must be older than the threshold at startup
    stack.stream.start()
    rows, streaming = db_messages(stack, message_id)
    assert streaming == 0
    assert rows[message_id]["status"] == "interrupted"
    saved = rows[message_id]["content"]
    assert saved and full.startswith(saved)
    replay = user.resume(message_id, 0)
    assert replay.types == ["start", "content", "error"]
    assert replay.text == saved
    assert replay.final.data["code"] == "interrupted"


def test_a_reader_of_a_killed_generation_is_not_left_waiting(stack, make_user):
    """Another process follows the stored text of an answer whose process died: once the
    row is older than STREAM_STALE_AFTER_SECONDS the reader gets the end, not pings forever."""
    user = make_user()
    ensure_running(stack)
    conversation_id, message_id, full = _kill_mid_stream(stack, user)
    killed_at = time.monotonic()

    # c3-app never saw this answer, and its row is fresh: it follows the stored text.
    replay = user.resume(message_id, 0, via="app", max_seconds=STALE + 10)

    assert_replayed_as_interrupted(user, replay, conversation_id, message_id, full)
    assert replay.final.at - killed_at < STALE + 5
    ensure_running(stack)

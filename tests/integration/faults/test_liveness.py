"""Issue 8 item 5: a dead generation is noticed in seconds, a live one never taken for dead,
and a restart ends its previous run's answers at once; gunicorn's SIGTERM ends fallback
streams with a final event inside its graceful timeout.

Real processes, real signals: uvicorn is killed with SIGKILL and restarted, gunicorn gets
SIGTERM. This module restarts servers, so it has a stack of its own.
"""

from __future__ import annotations

import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.fake_upstream import directive, expected_text

from .conftest import PROFILES
from .helpers import assert_replayed_as_interrupted, db_messages, read_until_cut, wait_until

pytestmark = pytest.mark.integration

STACK_PROFILE = "liveness"
STALE = float(PROFILES["liveness"]["STREAM_STALE_AFTER_SECONDS"])
GUNICORN_GRACEFUL = 5.0  # the test stack's --graceful-timeout (tests/support/servers.py)
LONG = directive(tokens=150, pace=0.1)  # fifteen seconds of answer


def restart_stream(stack, **env: str | None) -> None:
    """(Re)start the stream service with these variables changed (None removes one)."""
    if stack.stream.process.poll() is None:
        stack.stream.stop()
    for key, value in env.items():
        if value is None:
            stack.stream.env.pop(key, None)
        else:
            stack.stream.env[key] = value
    start(stack.stream)


def start(server) -> None:
    """Start a server, with room for a loaded machine; never leave a half-started one."""
    try:
        server.start(timeout=90)
    except BaseException:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        raise


def kill_stream_mid_answer(stack, user) -> tuple[str, str, str]:
    """Start a long answer on the stream service, let some text be saved, SIGKILL it."""
    seen: list = []
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(read_until_cut, user, {"message": "doomed " + LONG}, seen, timeout=60)
        wait_until(lambda: len(seen) >= 4, what="some tokens")
        conversation_id, message_id = seen[0].data["conversation_id"], seen[0].data["message_id"]
        wait_until(lambda: db_messages(stack, message_id)[0][message_id]["content"], what="a save")
        stack.stream.signal(signal.SIGKILL)
        stack.stream.process.wait(timeout=10)
        future.result(timeout=10)
    return conversation_id, message_id, expected_text(LONG)


def test_a_live_answer_waiting_for_its_first_token_is_not_taken_for_dead(stack, make_user):
    """The heartbeat, not the text, says a generation is alive: a first token later than
    the stale window must not get the answer marked interrupted by another process."""
    restart_stream(stack, STREAM_INSTANCE_ID=None)
    user = make_user()
    message = "slow start " + directive(tokens=3, first_delay=STALE + 2)
    seen: list = []
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(user.post_stream, {"message": message}, on_event=seen.append)
        wait_until(lambda: seen, what="the start event")
        # c3-app never saw this answer: it follows the stored row (and sweeps stale ones).
        replay = user.resume(seen[0].data["message_id"], 0, via="app", max_seconds=STALE + 15)
        live = future.result(timeout=30)
    assert live.final.type == "done" and live.text == expected_text(message)
    assert replay.final.type == "done", replay.types[-3:]
    assert replay.text == expected_text(message)


def test_a_killed_stream_service_is_noticed_within_the_stale_window(stack, make_user):
    restart_stream(stack, STREAM_INSTANCE_ID=None)  # a random id per process: heartbeat only
    user = make_user()
    conversation_id, message_id, full = kill_stream_mid_answer(stack, user)
    killed_at = time.monotonic()

    replay = user.resume(message_id, 0, via="app", max_seconds=STALE + 15)

    assert_replayed_as_interrupted(user, replay, conversation_id, message_id, full)
    # The last heartbeat was at most a beat before the kill.
    assert replay.final.at - killed_at < STALE + 3
    restart_stream(stack)


def test_a_restarted_instance_ends_its_previous_runs_answers_at_once(stack, make_user):
    # A stale window far longer than the test: only the restart can end the answer.
    instance = f"it-{uuid.uuid4().hex[:8]}"
    restart_stream(stack, STREAM_INSTANCE_ID=instance, STREAM_STALE_AFTER_SECONDS="120")
    try:
        user = make_user()
        conversation_id, message_id, full = kill_stream_mid_answer(stack, user)
        saved = db_messages(stack, message_id)[0][message_id]["content"]
        start(stack.stream)  # same STREAM_INSTANCE_ID: its previous incarnation is dead

        rows, streaming = db_messages(stack, message_id)
        assert rows[message_id]["status"] == "interrupted"
        assert rows[message_id]["content"] == saved
        replay = user.resume(message_id, 0, max_seconds=10)
        assert replay.types == ["start", "content", "error"]
        assert replay.final.data["code"] == "interrupted"
        assert replay.text == saved and full.startswith(saved)
    finally:
        restart_stream(stack, STREAM_INSTANCE_ID=None, STREAM_STALE_AFTER_SECONDS=None)


def test_a_restart_leaves_a_live_siblings_answers_alone(stack, make_user):
    """gunicorn's worker shares the stream service's instance id: a restart of the stream
    service must not end the answer that worker is generating (its lock is held)."""
    instance = f"it-{uuid.uuid4().hex[:8]}"
    stack.app.stop()
    stack.app.env["STREAM_INSTANCE_ID"] = instance
    start(stack.app)
    restart_stream(stack, STREAM_INSTANCE_ID=instance)
    try:
        user = make_user()
        message = "sibling " + directive(tokens=30, pace=0.1)
        seen: list = []
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(
                user.post_stream, {"message": message}, on_event=seen.append, via="app"
            )
            wait_until(lambda: len(seen) >= 3, what="the fallback's first tokens")
            restart_stream(stack)
            result = future.result(timeout=30)
        assert result.final.type == "done" and result.text == expected_text(message)
        stored = user.stored(result.conversation_id, result.message_id)
        assert stored["status"] == "complete"
    finally:
        stack.app.stop()
        stack.app.env.pop("STREAM_INSTANCE_ID", None)
        start(stack.app)
        restart_stream(stack, STREAM_INSTANCE_ID=None)


def test_gunicorn_sigterm_ends_fallback_streams_inside_its_graceful_timeout(stack, make_user):
    user = make_user()
    seen: list = []
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            read_until_cut, user, {"message": "fallback " + LONG}, seen, via="app", timeout=60
        )
        wait_until(lambda: len(seen) >= 4, what="the fallback's first tokens")
        sigterm_at = time.monotonic()
        stack.app.signal(signal.SIGTERM)
        result = future.result(timeout=30)
    try:
        assert result is not None, "the connection was cut without a final event"
        assert result.ended_with_one_final(), result.types[-3:]
        assert (result.final.type, result.final.data["code"]) == ("error", "server_restarting")
        assert result.final.at - sigterm_at < GUNICORN_GRACEFUL
        stack.app.process.wait(timeout=GUNICORN_GRACEFUL + 5)
        rows, _ = db_messages(stack, result.message_id)
        row = rows[result.message_id]
        assert (row["status"], row["error_code"]) == ("interrupted", "server_restarting")
        assert row["content"] == result.text
        assert result.text and expected_text(LONG).startswith(result.text)
    finally:
        if stack.app.process.poll() is None:
            stack.app.process.wait(timeout=20)
        start(stack.app)

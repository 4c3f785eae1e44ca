"""Issue 8 item 5, the page's side: the stream service is killed with SIGKILL mid-answer
and restarted on the same port against the same database. The page reconnects, the
restarted service replays the answer from the database (a `start`, the saved text — seconds
behind what was on screen — then `error` `interrupted` once the dead generation's heartbeat
is stale), and the page must keep showing what it had, never less, end the dots and Stop
state and offer a retry.

Real processes and a real signal; this module restarts the stream service, so it has a
stack of its own with a short stale window.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.fake_upstream import directive, expected_text
from tests.support.servers import Stack, running_stack

from .chat_page import UI_TIMEOUT_MS, ChatPage, normalize

pytestmark = pytest.mark.e2e

# A dead generation is noticed this long after its last heartbeat (beats every ~1.3 s).
STALE = 4.0
# Saves are this far apart, so at the kill the database holds less than the screen.
SAVE_INTERVAL = 4.0
LONG = directive(tokens=400, pace=0.1)  # forty seconds of answer: it outlives the test


@pytest.fixture(scope="module")
def e2e_stack(module_tmp: Path) -> Iterator[Stack]:
    env = {
        "STREAM_HEARTBEAT_SECONDS": "1",
        "STREAM_STALE_AFTER_SECONDS": str(STALE),
        "CHAT_SAVE_INTERVAL_SECONDS": str(SAVE_INTERVAL),
        "CHAT_AUTO_TITLE": "false",
    }
    with running_stack("sqlite", module_tmp, extra_env=env) as stack:
        yield stack


# Records the answer's visible length (whitespace left out: Markdown may render spaces
# differently while streaming) after every DOM change and every frame, so that a wipe
# that lasts a single task is seen too.
MONITOR = """(article) => {
    const lengths = [];
    const content = article.querySelector('.message-content');
    const sample = () => {
        const n = content.innerText.replace(/\\s+/g, '').length;
        if (lengths.length === 0 || lengths[lengths.length - 1] !== n) lengths.push(n);
    };
    new MutationObserver(sample).observe(article, {
        childList: true, subtree: true, characterData: true,
    });
    const frame = () => { sample(); requestAnimationFrame(frame); };
    frame();
    window.__answerLengths = lengths;
}"""


def visible_chars(chat: ChatPage, answer) -> int:
    return len("".join(chat.answer_text(answer).split()))


def test_a_killed_and_restarted_stream_service_leaves_the_shown_text_and_ends_interrupted(
    e2e_stack, make_browser_user
):
    stack = e2e_stack
    user = make_browser_user()
    user.login()
    chat = ChatPage(user.page)
    answer = chat.send("doomed " + LONG)
    chat.wait_text_while_streaming(answer, 20)
    answer.evaluate(MONITOR)
    conversation_id = chat.current_conversation_id()
    message_id = answer.get_attribute("data-message-id")
    assert message_id

    # Kill just after a save has reached the database, once the screen is well ahead of
    # it: the replay after the restart then holds less than the page showed.
    def saved() -> str:
        rows = [m for m in chat.history(stack.app_url, conversation_id) if m["id"] == message_id]
        return rows[0]["content"] if rows else ""

    deadline = time.monotonic() + 20
    while not saved().strip():
        assert time.monotonic() < deadline, "no save reached the database"
        time.sleep(0.2)
    saved_chars = len("".join(saved().split()))
    user.page.wait_for_function(
        """([article, min]) => article.dataset.status === 'streaming'
            && article.querySelector('.message-content').innerText
                .replace(/\\s+/g, '').length >= min""",
        arg=[answer.element_handle(), saved_chars + 25],
        timeout=UI_TIMEOUT_MS * 2,
    )
    stack.stream.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    stack.stream.process.wait(timeout=10)
    shown_at_kill = visible_chars(chat, answer)

    # The same port, the same database, a new process (its log beside the dead one's).
    stack.stream.log_path = stack.stream.log_path.with_name(
        f"uvicorn-{stack.stream.port}-restarted.log"
    )
    stack.stream.start(timeout=90)
    restarted_after = time.monotonic() - killed_at

    # The page's reconnect back-off waits at most 8 s more at that point (0.5 s, 1 s, 2 s…).
    chat.wait_status(answer, "interrupted", timeout=int((STALE + 15 + 5) * 1000))
    ended_after = time.monotonic() - killed_at
    assert ended_after < restarted_after + 8 + STALE + 5, (restarted_after, ended_after)

    lengths = user.page.evaluate("() => window.__answerLengths")
    drops = [(a, b) for a, b in zip(lengths, lengths[1:], strict=False) if b < a]
    assert not drops, f"the shown answer shrank: {lengths}"

    # What the page shows: all it had, which is more than the database kept.
    stored = chat.history(stack.app_url, conversation_id)
    row = next(m for m in stored if m["id"] == message_id)
    assert row["status"] == "interrupted"
    shown = chat.answer_text(answer)
    full = normalize(expected_text(LONG))
    assert len("".join(row["content"].split())) < shown_at_kill, "the replay was not shorter"
    assert full.startswith(shown) and shown.startswith(normalize(row["content"]))
    assert visible_chars(chat, answer) >= shown_at_kill

    # The answer's streaming state is over: no dots, no Stop; an interrupted notice with retry.
    expect(answer.locator(".typing-indicator")).to_have_count(0)
    expect(answer.locator(".stream-cursor")).to_have_count(0)
    expect(chat.stop_button).to_be_hidden()
    expect(chat.send_button).to_be_visible()
    notice = answer.locator(".message-notice.is-warning")
    expect(notice).to_be_visible()
    expect(notice.locator(".retry-button")).to_be_visible()
    assert not answer.get_attribute("aria-busy")

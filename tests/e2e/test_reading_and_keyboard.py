"""Reading a long answer and driving the page from the keyboard, in a real Chromium.

Following: while an answer streams, the view stays at its last line (also for the second
long answer of a chat) until the user scrolls away with the wheel. Focus: after Stop
(button or Escape) and after deleting a conversation the keyboard is in the input, never on
<body>. Shortcuts: new chat, search, Escape, and the `?` help dialog.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_page import STREAM_TIMEOUT_MS, UI_TIMEOUT_MS, ChatPage

pytestmark = pytest.mark.e2e

LONG = "[[fake tokens=700 pace=0.012]]"

# Samples the gap under the last line on every animation frame while `article` streams,
# and resolves with the largest gap seen once the answer has ended.
MAX_GAP_WHILE_STREAMING = """(article) => new Promise((resolve) => {
    const c = document.getElementById('chat-container');
    let max = 0, samples = 0, overflowed = false;
    const tick = () => {
        if (article.dataset.status !== 'streaming') {
            resolve({max, samples, overflowed});
            return;
        }
        const gap = c.scrollHeight - c.scrollTop - c.clientHeight;
        if (c.scrollHeight > c.clientHeight * 1.5) overflowed = true;
        max = Math.max(max, gap);
        samples += 1;
        requestAnimationFrame(tick);
    };
    tick();
})"""


def line_height(chat: ChatPage) -> float:
    return chat.page.evaluate(
        "() => parseFloat(getComputedStyle(document.querySelector('.message-content')).lineHeight)"
    )


def gap_to_bottom(chat: ChatPage) -> float:
    return chat.page.evaluate(
        "() => { const c = document.getElementById('chat-container');"
        " return c.scrollHeight - c.scrollTop - c.clientHeight; }"
    )


def test_the_second_long_answer_is_followed_until_the_user_scrolls(make_browser_user):
    user = make_browser_user(viewport=(1100, 620))
    user.login()
    chat = ChatPage(user.page)

    first = chat.send(f"First long question {LONG}")
    chat.wait_status(first, "complete", timeout=STREAM_TIMEOUT_MS * 2)
    assert chat.page.evaluate(
        "() => { const c = document.getElementById('chat-container');"
        " return c.scrollHeight > c.clientHeight; }"
    ), "the first answer should be longer than the screen"

    second = chat.send(f"Second long question {LONG}")
    chat.wait_text_while_streaming(second, 20)
    seen = chat.page.evaluate(MAX_GAP_WHILE_STREAMING, second.element_handle())
    assert seen["samples"] > 20 and seen["overflowed"], seen
    assert seen["max"] < line_height(chat), seen
    chat.wait_status(second, "complete")

    # A real wheel scroll upwards while the third answer streams stops following.
    third = chat.send(f"Third long question {LONG}")
    chat.wait_text_while_streaming(third, 200)
    box = chat.container.bounding_box()
    assert box
    chat.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    chat.page.mouse.wheel(0, -300)
    chat.page.wait_for_function(
        "() => { const c = document.getElementById('chat-container');"
        " return c.scrollHeight - c.scrollTop - c.clientHeight > 250; }",
        timeout=UI_TIMEOUT_MS,
    )
    top = chat.page.evaluate("() => document.getElementById('chat-container').scrollTop")
    chat.wait_status(third, "complete", timeout=STREAM_TIMEOUT_MS * 2)
    # The reader's place is kept while the text below it grew.
    assert chat.page.evaluate("() => document.getElementById('chat-container').scrollTop") == top
    assert gap_to_bottom(chat) > 400
    expect(chat.page.locator("#scroll-to-bottom")).to_be_visible()


def test_focus_returns_to_the_input_after_stop_and_delete(make_browser_user):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)

    # Stop from the keyboard: Tab to the stop button, press Enter.
    answer = chat.send("Stop me [[fake tokens=200 pace=0.05]]")
    chat.wait_text_while_streaming(answer, 5)
    chat.stop_button.focus()
    page.keyboard.press("Enter")
    chat.wait_status(answer, "stopped")
    expect(chat.input).to_be_focused()

    # Escape while streaming stops too, and the keyboard stays in the input.
    answer = chat.send("Stop me again [[fake tokens=200 pace=0.05]]")
    chat.wait_text_while_streaming(answer, 5)
    expect(chat.input).to_be_focused()
    page.keyboard.press("Escape")
    chat.wait_status(answer, "stopped")
    expect(chat.input).to_be_focused()

    # Delete from the keyboard: focus the delete button, accept the confirmation.
    conversation_id = chat.current_conversation_id()
    page.once("dialog", lambda dialog: dialog.accept())
    chat.conversation(conversation_id).locator(".delete-conversation").focus()
    page.keyboard.press("Enter")
    expect(chat.conversation(conversation_id)).to_have_count(0)
    expect(chat.input).to_be_focused()
    assert user.console_errors == []


def test_shortcuts_and_their_help_dialog(make_browser_user):
    user = make_browser_user(locale="en-US")
    user.login()
    page = user.page
    chat = ChatPage(page)
    chat.send_and_complete("Hello [[fake tokens=3]]")

    # `?` outside a text field opens the help dialog, which lists the shortcuts.
    chat.container.focus()
    page.keyboard.press("?")
    dialog = page.locator("#shortcuts-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("New chat")
    expect(dialog).to_contain_text("Search conversations")
    expect(dialog).to_contain_text("Stop generating")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Typing `?` in the input is just text.
    chat.input.focus()
    page.keyboard.press("?")
    expect(dialog).to_be_hidden()
    expect(chat.input).to_have_value("?")
    chat.input.fill("")

    page.keyboard.press("Control+k")
    expect(page.locator("#conversation-search")).to_be_focused()

    page.keyboard.press("Control+Shift+O")
    expect(chat.container.locator("article.message")).to_have_count(0)
    expect(page.locator("#empty-state")).to_be_visible()
    expect(chat.input).to_be_focused()
    assert user.console_errors == []

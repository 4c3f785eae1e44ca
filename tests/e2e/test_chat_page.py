"""The chat page in a real Chromium: log in, stream, Markdown, XSS, stop, reload mid-answer.

Servers are real (gunicorn c3-app on 127.0.0.1, uvicorn c3-app-stream on localhost, a fake
OpenAI-compatible upstream); what the page shows is compared with what the fake sent.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_page import STREAM_TIMEOUT_MS, UI_TIMEOUT_MS, ChatPage, expected, normalize

pytestmark = pytest.mark.e2e


def test_login_send_and_watch_the_answer_grow(make_browser_user, e2e_stack, screenshots):
    user = make_browser_user()
    page = user.page

    # Log in through the form, as a person does.
    page.goto(f"{e2e_stack.app_url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", user.password)
    page.screenshot(path=str(screenshots / "01-login.png"))
    page.click("button[type=submit]")
    page.wait_for_url(f"{e2e_stack.app_url}/ai/chat/")
    chat = ChatPage(page)
    expect(page.locator("#empty-state")).to_be_visible()
    expect(chat.input).to_be_focused()
    chat.screenshot(screenshots, "02-empty-chat")

    message = "Count for me [[fake tokens=40 pace=0.08 first_delay=1.5]]"
    answer = chat.send(message, type_it=True)
    expect(chat.user_messages.last.locator(".message-content")).to_have_text(message)

    # Before the first token: the thinking indicator, the stop button, no send button.
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(answer.locator(".typing-indicator")).to_be_visible()
    expect(chat.stop_button).to_be_visible()
    expect(chat.send_button).to_be_hidden()
    # The stream has started (the answer has its id) and the list shows it as answering.
    expect(answer).to_have_attribute("data-message-id", re.compile(r"."))
    expect(chat.current_conversation.locator(".conversation-live")).to_be_visible()
    expect(answer.locator(".typing-indicator")).to_be_visible()
    assert chat.answer_text(answer) == ""
    chat.screenshot(screenshots, "03-thinking")

    # The text grows in place while the status stays `streaming`.
    lengths = [chat.wait_text_while_streaming(answer, 1)]
    expect(answer.locator(".typing-indicator")).to_have_count(0)
    for _ in range(3):
        lengths.append(chat.wait_text_while_streaming(answer, lengths[-1] + 1))
    assert len(set(lengths)) == len(lengths) >= 4, lengths
    chat.screenshot(screenshots, "04-streaming")

    chat.wait_status(answer, "complete")
    assert chat.answer_text(answer) == expected(message)
    assert answer.get_attribute("data-message-id")
    expect(chat.stop_button).to_be_hidden()
    expect(chat.send_button).to_be_visible()
    expect(answer.locator("#regenerate-button")).to_be_visible()
    expect(chat.current_conversation.locator(".conversation-live")).to_have_count(0)
    # A finished answer leaves no in-flight record behind.
    assert chat.inflight() is None

    # The database holds the same text, complete.
    conversation_id = chat.current_conversation_id()
    history = chat.history(e2e_stack.app_url, conversation_id)
    assert [(m["role"], m["status"]) for m in history] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert normalize(history[1]["content"]) == expected(message)
    assert history[1]["id"] == answer.get_attribute("data-message-id")
    assert user.console_errors == []


def test_markdown_renders_while_streaming_and_at_the_end(make_browser_user, screenshots):
    user = make_browser_user()
    user.login()
    chat = ChatPage(user.page)
    answer = chat.send("Show me Markdown [[fake reply=markdown pace=0.08]]")
    content = answer.locator(".message-content")

    # Mid-stream: the list and the table are real elements while more text is coming.
    user.page.wait_for_function(
        """(article) => article.dataset.status === 'streaming'
            && article.querySelector('.message-content ul > li')
            && article.querySelector('.message-content table td')""",
        arg=answer.element_handle(),
        timeout=STREAM_TIMEOUT_MS,
    )
    # ...and the code block is highlighted before the answer ends.
    user.page.wait_for_function(
        """(article) => article.dataset.status === 'streaming'
            && article.querySelector('.code-block code.hljs span.hljs-keyword')""",
        arg=answer.element_handle(),
        timeout=STREAM_TIMEOUT_MS,
    )

    chat.wait_status(answer, "complete")
    expect(content.locator("ul > li")).to_have_text(["first item", "second item", "third item"])
    expect(content.locator("table th")).to_have_text(["Name", "Value"])
    expect(content.locator("table tbody tr")).to_have_count(2)
    expect(content.locator("strong")).to_have_text("short")
    expect(content.locator("p code")).to_have_text("inline code")

    link = content.locator("a", has_text="the docs")
    expect(link).to_have_attribute("href", "https://example.com/docs")
    expect(link).to_have_attribute("target", "_blank")
    assert "noopener" in (link.get_attribute("rel") or "").split()

    block = content.locator(".code-block")
    expect(block).to_have_count(1)
    expect(block.locator("code")).to_have_class("hljs language-python")
    expect(block.locator("span.hljs-keyword").first).to_have_text("def")
    expect(block.locator("code")).to_contain_text('return f"Hello, {name}!"')
    expect(block.locator(".copy-code-button")).to_be_visible()
    # Nothing of the streaming caret is left once the answer is complete.
    expect(content.locator(".stream-cursor")).to_have_count(0)
    chat.screenshot(screenshots, "05-markdown-answer")
    assert user.console_errors == []


def test_a_code_block_without_a_language_is_not_coloured_by_a_guess(make_browser_user):
    """Issue 11 defect 6: highlight only a named or confidently detected language. The
    block's text is what highlight.js guesses vbnet or sql for (relevance 3 of >= 10)."""
    user = make_browser_user()
    user.login()
    chat = ChatPage(user.page)
    answer = chat.send("Unlabelled code [[fake reply=plain_code]]")
    chat.wait_status(answer, "complete")
    code = answer.locator(".message-content .code-block code")
    expect(code).to_have_count(1)
    expect(code).to_contain_text("Step 2: choose a model and save it.")
    expect(code).to_contain_text("drwxr-xr-x 2 user user 4096")
    # Rendered at the end too (auto-detection runs only on the final pass), yet plain.
    expect(code).to_have_attribute("class", "hljs")
    expect(code.locator("span[class^='hljs-']")).to_have_count(0)
    assert user.console_errors == []


def test_hostile_answer_is_shown_as_text_and_never_runs(make_browser_user, e2e_stack):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    answer = chat.send("Be evil [[fake reply=xss pace=0.02]]")
    chat.wait_status(answer, "complete")
    content = answer.locator(".message-content")
    expect(content).to_contain_text("A normal link at the end.")

    assert page.evaluate("() => typeof window.__xss") == "undefined"
    container = page.locator("#chat-container")
    expect(container.locator("script")).to_have_count(0)
    expect(container.locator("img")).to_have_count(0)
    expect(container.locator('a[href^="javascript:" i]')).to_have_count(0)
    handlers = page.evaluate(
        """() => [...document.querySelectorAll('#chat-container *')].flatMap(
            (node) => [...node.attributes].map((a) => a.name).filter((n) => /^on/i.test(n)))"""
    )
    assert handlers == []
    # The raw HTML is visible as text: escaped, not dropped and not interpreted.
    expect(content).to_contain_text("<script>window.__xss=1</script>")
    expect(content).to_contain_text('<img src=x onerror="window.__xss=1">')
    # The javascript: link is left without a usable href; the normal one is kept.
    hrefs = content.locator("a").evaluate_all("(links) => links.map((a) => a.getAttribute('href'))")
    assert hrefs.count("https://example.com/safe") == 1
    assert all(h is None or h == "https://example.com/safe" for h in hrefs), hrefs
    # No image was ever requested, not even a relative one on our own origin.
    assert not [u for u in user.requests if u.rstrip("/").endswith("/x")], user.requests
    assert user.console_errors == []


def test_stop_keeps_the_partial_answer_after_reload(make_browser_user, e2e_stack, screenshots):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    message = "Talk slowly [[fake tokens=200 pace=0.1]]"
    answer = chat.send(message)
    chat.wait_text_while_streaming(answer, len("tok0 tok1 tok2 tok3"))

    chat.stop_button.click()
    # The server confirms with done(stopped) at once; no waiting for the 2.5 s fallback.
    chat.wait_status(answer, "stopped", timeout=2_000)
    expect(answer.locator(".message-notice")).to_be_visible()
    expect(chat.stop_button).to_be_hidden()
    expect(chat.send_button).to_be_visible()
    partial = chat.answer_text(answer)
    full = expected(message)
    assert partial and full.startswith(partial) and len(partial) < len(full) // 2
    message_id = answer.get_attribute("data-message-id")
    chat.screenshot(screenshots, "06-stopped")
    # Nothing more arrives after the stop.
    expect(answer.locator(".message-content")).to_have_text(partial, timeout=1_000)
    assert chat.answer_text(answer) == partial

    conversation_id = chat.current_conversation_id()
    page.reload()
    answer = chat.last_answer
    expect(answer).to_have_attribute("data-message-id", message_id, timeout=UI_TIMEOUT_MS)
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(answer.locator(".message-notice")).to_be_visible()
    assert chat.answer_text(answer) == partial
    expect(chat.answers).to_have_count(1)

    history = chat.history(e2e_stack.app_url, conversation_id)
    assert history[-1]["id"] == message_id
    assert history[-1]["status"] == "stopped"
    assert normalize(history[-1]["content"]) == partial
    assert user.console_errors == []


def test_reload_mid_stream_finishes_the_same_answer_once(make_browser_user, e2e_stack):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    message = "Keep going [[fake tokens=40 pace=0.1]]"
    answer = chat.send(message)
    chat.wait_text_while_streaming(answer, len("tok0 tok1 tok2 tok3 tok4"))
    message_id = answer.get_attribute("data-message-id")
    assert message_id

    page.reload()
    answer = chat.last_answer
    expect(answer).to_have_attribute("data-message-id", message_id, timeout=UI_TIMEOUT_MS)
    # The same answer picks up where it was and carries on streaming in place.
    resumed = chat.wait_text_while_streaming(answer, len("tok0 tok1 tok2 tok3 tok4"))
    chat.wait_text_while_streaming(answer, resumed + 1)
    expect(chat.stop_button).to_be_visible()
    chat.wait_status(answer, "complete")
    assert chat.answer_text(answer) == expected(message)
    expect(chat.answers).to_have_count(1)
    expect(chat.user_messages).to_have_count(1)
    assert chat.inflight() is None

    history = chat.history(e2e_stack.app_url, chat.current_conversation_id())
    assert [(m["role"], m["status"]) for m in history] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert normalize(history[-1]["content"]) == expected(message)
    assert user.console_errors == []

"""Language, phone layout and dark mode of the chat page in a real Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_page import UI_TIMEOUT_MS, ChatPage

pytestmark = pytest.mark.e2e

PHONE = (360, 740)


def test_english_browser_gets_the_english_ui(make_browser_user, screenshots):
    user = make_browser_user(locale="en-US")
    page = user.page
    page.goto(f"{user.stack.app_url}/accounts/login/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator(".login-form button[type=submit]")).to_have_text("Log in")

    user.login()
    chat = ChatPage(page)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(chat.send_button).to_have_attribute("aria-label", "Send")
    expect(chat.input).to_have_attribute("placeholder", "Send a message")
    expect(page.locator("#new-conversation")).to_have_text("New chat")
    expect(page.locator("#empty-state h2")).to_have_text("How can I help you today?")
    expect(page.locator('.language-option[aria-current="true"]')).to_have_text("English")

    answer = chat.send_and_complete("Hello [[fake tokens=6]]")
    # The page's own strings around the answer are English too.
    expect(answer).to_have_attribute("aria-label", "Assistant")
    expect(answer.locator("#regenerate-button")).to_have_attribute(
        "aria-label", "Regenerate the answer"
    )
    # The list refreshes after the answer: the conversation is named after the message.
    expect(chat.conversations).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(chat.title).to_contain_text("Hello")
    chat.screenshot(screenshots, "09-english-ui")
    assert user.console_errors == []


def test_japanese_browser_and_the_language_switch(make_browser_user):
    user = make_browser_user(locale="ja-JP")
    user.login()
    page = user.page
    chat = ChatPage(page)
    html = page.locator("html")
    expect(html).to_have_attribute("lang", "ja")
    expect(chat.send_button).to_have_attribute("aria-label", "送信")
    expect(chat.input).to_have_attribute("placeholder", "メッセージを入力")
    expect(page.locator('.language-option[aria-current="true"]')).to_have_text("日本語")

    # Switch to English: the page comes back in English and stays so after a reload.
    page.locator('.language-option[value="en"]').click()
    expect(html).to_have_attribute("lang", "en", timeout=UI_TIMEOUT_MS)
    page.wait_for_url(re.compile(r"/ai/chat/$"))
    expect(chat.send_button).to_have_attribute("aria-label", "Send")
    expect(chat.input).to_have_attribute("placeholder", "Send a message")
    expect(page.locator('.language-option[aria-current="true"]')).to_have_text("English")
    page.reload()
    expect(html).to_have_attribute("lang", "en")
    expect(chat.send_button).to_have_attribute("aria-label", "Send")

    # The chat works in the chosen language, then switch back to Japanese.
    chat.send_and_complete("Hi [[fake tokens=3]]")
    page.locator('.language-option[value="ja"]').click()
    expect(html).to_have_attribute("lang", "ja", timeout=UI_TIMEOUT_MS)
    expect(chat.send_button).to_have_attribute("aria-label", "送信")
    expect(page.locator('.language-option[aria-current="true"]')).to_have_text("日本語")
    # Switching language keeps the conversation.
    expect(chat.answers).to_have_count(1, timeout=UI_TIMEOUT_MS)
    assert user.console_errors == []


def test_phone_layout(make_browser_user, screenshots):
    user = make_browser_user(viewport=PHONE, is_mobile=True, has_touch=True)
    user.login()
    page = user.page
    chat = ChatPage(page)
    sidebar = page.locator("#sidebar")
    toggle = page.locator("#sidebar-toggle")

    chat.no_horizontal_scroll(PHONE[0])
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(sidebar).to_be_hidden()
    expect(chat.input).to_be_visible()
    expect(chat.input).to_be_in_viewport()

    # Chat works, and a wide answer (table, code) scrolls inside itself, not the page.
    answer = chat.send("Wide things [[fake reply=markdown pace=0.01]]")
    chat.wait_status(answer, "complete")
    expect(answer.locator("table")).to_have_count(1)
    expect(answer.locator(".code-block")).to_have_count(1)
    box = answer.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0], box
    chat.no_horizontal_scroll(PHONE[0])
    expect(chat.send_button).to_be_in_viewport()
    chat.screenshot(screenshots, "07-phone")

    # The conversation list slides in on demand and goes away again.
    toggle.click()
    expect(sidebar).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(chat.conversations).to_have_count(1)
    # Once the slide-in transition has finished, the whole list is on screen.
    page.wait_for_function(
        """() => {
            const sidebar = document.getElementById('sidebar');
            const box = sidebar.getBoundingClientRect();
            return sidebar.getAnimations().length === 0 && box.left === 0;
        }""",
        timeout=UI_TIMEOUT_MS,
    )
    box = sidebar.bounding_box()
    assert box and box["width"] <= PHONE[0], box
    expect(page.locator("#new-conversation")).to_be_in_viewport(ratio=1)
    chat.no_horizontal_scroll(PHONE[0])
    chat.screenshot(screenshots, "07-phone-sidebar")
    page.locator("#sidebar-backdrop").click(position={"x": PHONE[0] - 10, "y": PHONE[1] // 2})
    expect(sidebar).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")

    # Picking "new chat" from the list closes it too.
    toggle.click()
    expect(sidebar).to_be_visible()
    page.locator("#new-conversation").click()
    expect(sidebar).to_be_hidden()
    expect(chat.container.locator("article.message")).to_have_count(0)
    chat.send_and_complete("Phone again [[fake tokens=4]]")
    chat.no_horizontal_scroll(PHONE[0])
    assert user.console_errors == []


def test_dark_mode(make_browser_user, screenshots):
    user = make_browser_user(color_scheme="dark")
    user.login()
    page = user.page
    chat = ChatPage(page)
    answer = chat.send("Dark [[fake reply=markdown pace=0.01]]")
    chat.wait_status(answer, "complete")
    expect(answer.locator(".code-block")).to_have_count(1)

    def luminance(selector: str, prop: str) -> float:
        rgb = page.evaluate(
            """([selector, prop]) => getComputedStyle(document.querySelector(selector))[prop]""",
            [selector, prop],
        )
        r, g, b = (int(v) for v in re.findall(r"\d+", rgb)[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    assert page.evaluate("() => matchMedia('(prefers-color-scheme: dark)').matches")
    assert luminance("body", "backgroundColor") < 0.2
    assert luminance("#chat-input", "color") > 0.7
    assert luminance(".message[data-role=assistant] .message-content", "color") > 0.7
    chat.screenshot(screenshots, "08-dark-mode")
    assert user.console_errors == []

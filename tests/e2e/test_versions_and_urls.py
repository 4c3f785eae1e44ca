"""Regenerate and edit with versions, a URL per conversation, search, the model picker,
settings, export and new chats that create nothing, in a real Chromium against the real
servers. What the model received is read back from the fake upstream.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_page import UI_TIMEOUT_MS, ChatPage, expected
from tests.support.fake_upstream import strip_directives

pytestmark = pytest.mark.e2e

VERSION_LABEL = '[data-role="version-label"]'


def conversation_ids(page, app_url: str) -> list[str]:
    response = page.request.get(f"{app_url}/api/ai/conversations/")
    assert response.ok, response.status
    return [c["id"] for c in response.json()["conversations"]]


def upstream_request_for(stack, marker: str) -> dict:
    """The last chat request the fake upstream got whose last user message holds `marker`."""
    found = [
        body
        for body in stack.upstream.requests()
        if any(
            m.get("role") == "user" and marker in str(m.get("content"))
            for m in body["messages"][-1:]
        )
    ]
    assert found, f"no upstream request with {marker!r}"
    return found[-1]


def roles_and_texts(body: dict) -> list[tuple[str, str]]:
    return [(m["role"], strip_directives(str(m["content"])).strip()) for m in body["messages"]]


def test_regenerate_in_place_keeps_one_question_and_both_versions(make_browser_user, e2e_stack):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    question = "Regenerate marker-r1 [[fake tokens=4]]"
    first = chat.send_and_complete(question)
    first_id = first.get_attribute("data-message-id")

    page.click("#regenerate-button")
    answer = chat.last_answer
    chat.wait_status(answer, "complete")
    expect(chat.user_messages).to_have_count(1)
    expect(chat.answers).to_have_count(1)
    expect(answer.locator(VERSION_LABEL)).to_have_text("2/2")
    second_id = answer.get_attribute("data-message-id")
    assert second_id and second_id != first_id

    # The model got the question once, and not the first answer.
    body = upstream_request_for(e2e_stack, "marker-r1")
    user_turns = [text for role, text in roles_and_texts(body) if role == "user"]
    assert user_turns == ["Regenerate marker-r1"], roles_and_texts(body)
    assert all(role != "assistant" for role, _ in roles_and_texts(body)), roles_and_texts(body)

    # Back to the first version, and it stays the one shown after a reload.
    answer.locator('[data-action="previous-version"]').click()
    expect(chat.last_answer.locator(VERSION_LABEL)).to_have_text("1/2")
    expect(chat.last_answer).to_have_attribute("data-message-id", first_id)
    expect(chat.last_answer.locator(".message-content")).to_have_text(expected(question))
    page.reload()
    expect(chat.last_answer).to_have_attribute("data-message-id", first_id, timeout=UI_TIMEOUT_MS)
    expect(chat.last_answer.locator(VERSION_LABEL)).to_have_text("1/2")
    expect(chat.user_messages).to_have_count(1)
    chat.last_answer.locator('[data-action="next-version"]').click()
    expect(chat.last_answer).to_have_attribute("data-message-id", second_id)
    assert user.console_errors == []


def test_edit_and_resend_sends_only_the_edited_question(make_browser_user, e2e_stack):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    chat.send_and_complete("First question [[fake tokens=3]]")
    chat.send_and_complete("Second question [[fake tokens=3]]")

    first_user = chat.user_messages.first
    first_user.hover()
    first_user.locator('[data-action="edit"]').click()
    editor = first_user.locator("textarea.edit-input")
    expect(editor).to_be_focused()
    editor.fill("Edited marker-e1 [[fake tokens=2]]")
    editor.press("Enter")

    answer = chat.last_answer
    chat.wait_status(answer, "complete")
    expect(chat.user_messages).to_have_count(1)
    expect(chat.user_messages.first.locator(".message-content")).to_have_text(
        "Edited marker-e1 [[fake tokens=2]]"
    )
    expect(chat.user_messages.first.locator(VERSION_LABEL)).to_have_text("2/2")
    body = upstream_request_for(e2e_stack, "marker-e1")
    assert roles_and_texts(body)[-1:] == [("user", "Edited marker-e1")]
    assert [r for r, _ in roles_and_texts(body) if r != "system"] == ["user"], roles_and_texts(body)

    # The first version of the question brings its whole branch back.
    chat.user_messages.first.locator('[data-action="previous-version"]').click()
    expect(chat.user_messages).to_have_count(2)
    expect(chat.user_messages.first.locator(VERSION_LABEL)).to_have_text("1/2")
    expect(chat.user_messages.nth(1).locator(".message-content")).to_have_text(
        "Second question [[fake tokens=3]]"
    )
    assert user.console_errors == []


def test_a_url_per_conversation_with_back_and_forward(make_browser_user, e2e_stack, browser):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    chat.send_and_complete("Alpha url [[fake tokens=2]]")
    alpha_id = chat.current_conversation_id()
    expect(page).to_have_url(f"{e2e_stack.app_url}/ai/chat/{alpha_id}/")
    page.click("#new-conversation")
    expect(page).to_have_url(f"{e2e_stack.app_url}/ai/chat/")
    chat.send_and_complete("Beta url [[fake tokens=2]]")
    beta_id = chat.current_conversation_id()
    expect(page).to_have_url(f"{e2e_stack.app_url}/ai/chat/{beta_id}/")

    page.go_back()  # the new chat's address became beta's: back is alpha
    expect(page).to_have_url(f"{e2e_stack.app_url}/ai/chat/{alpha_id}/")
    expect(chat.user_messages.locator(".message-content")).to_have_text(
        "Alpha url [[fake tokens=2]]"
    )
    page.go_forward()
    expect(chat.user_messages.locator(".message-content")).to_have_text(
        "Beta url [[fake tokens=2]]"
    )

    # The address in a new tab opens that conversation.
    other_tab = user.context.new_page()
    other_tab.goto(f"{e2e_stack.app_url}/ai/chat/{alpha_id}/")
    expect(other_tab.locator("article.message[data-role=user] .message-content")).to_have_text(
        "Alpha url [[fake tokens=2]]"
    )
    other_tab.close()

    # Another user gets a 404 for it.
    stranger = make_browser_user()
    stranger.login()
    response = stranger.page.goto(f"{e2e_stack.app_url}/ai/chat/{alpha_id}/")
    assert response is not None and response.status == 404
    assert user.console_errors == []


def test_search_narrows_the_list(make_browser_user):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    chat.send_and_complete("Apple pie [[fake tokens=2]]")
    apple_id = chat.current_conversation_id()
    chat.send_and_complete("Something about zucchini [[fake tokens=2]]")
    page.click("#new-conversation")
    chat.send_and_complete("Banana bread [[fake tokens=2]]")
    banana_id = chat.current_conversation_id()
    expect(chat.conversations).to_have_count(2)

    page.keyboard.press("Control+k")
    search = page.locator("#conversation-search")
    expect(search).to_be_focused()
    search.press_sequentially("banana")
    expect(chat.conversations).to_have_count(1)
    expect(chat.conversation(banana_id)).to_be_visible()
    # Message text matches too, not only titles.
    search.fill("zucchini")
    expect(chat.conversations).to_have_count(1)
    expect(chat.conversation(apple_id)).to_be_visible()
    # Arrow down reaches the result; Escape in the field clears the search.
    search.press("ArrowDown")
    expect(chat.conversation(apple_id).locator(".conversation-link")).to_be_focused()
    search.focus()
    search.press("Escape")
    expect(chat.conversations).to_have_count(2)
    assert user.console_errors == []


def test_the_model_picker_and_the_instructions_reach_the_model(make_browser_user, e2e_stack):
    user = make_browser_user(locale="en-US")
    user.login()
    page = user.page
    chat = ChatPage(page)
    picker = page.locator("#model-select")
    expect(picker).to_be_visible()
    expect(picker.locator("option")).to_have_count(2)
    expect(picker).to_have_value("fake")

    picker.select_option("fake-large")
    chat.send_and_complete("Which model marker-m1 [[fake tokens=2]]")
    assert upstream_request_for(e2e_stack, "marker-m1")["model"] == "fake-large"
    conversation_id = chat.current_conversation_id()

    # Settings: the instruction is stored and sent as the system prompt.
    page.click("#settings-button")
    dialog = page.locator("#settings-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#conversation-instructions")).to_be_focused()
    page.fill("#conversation-instructions", "Answer like a pirate.")
    page.click("#settings-save")
    expect(dialog).to_be_hidden()
    detail = page.request.get(f"{e2e_stack.app_url}/api/ai/conversations/{conversation_id}/").json()
    assert detail["instructions"] == "Answer like a pirate."
    assert detail["model"] == "fake-large"
    chat.send_and_complete("Second marker-m2 [[fake tokens=2]]")
    body = upstream_request_for(e2e_stack, "marker-m2")
    assert body["model"] == "fake-large"
    assert {"role": "system", "content": "Answer like a pirate."} in body["messages"]

    # The picker follows the conversation: a new chat is back on the default.
    page.click("#new-conversation")
    expect(picker).to_have_value("fake")
    chat.conversation(conversation_id).locator(".conversation-link").click()
    expect(picker).to_have_value("fake-large")

    # The answer's footer shows its model and token usage on hover.
    chat.last_answer.hover()
    expect(chat.last_answer.locator('[data-role="answer-meta"]')).to_contain_text("fake-large")
    expect(chat.last_answer.locator('[data-role="answer-meta"]')).to_contain_text(
        re.compile(r"\d+ tokens")
    )
    assert user.console_errors == []


def test_export_downloads_parse(make_browser_user, e2e_stack, tmp_path):
    user = make_browser_user(accept_downloads=True)
    user.login()
    page = user.page
    chat = ChatPage(page)
    question = "Export me [[fake tokens=3]]"
    chat.send_and_complete(question)

    page.click("#export-button")
    with page.expect_download() as info:
        page.click("#export-markdown")
    markdown = tmp_path / "c.md"
    info.value.save_as(markdown)
    text = markdown.read_text("utf-8")
    assert question in text and expected(question) in " ".join(text.split())

    page.click("#export-button")
    with page.expect_download() as info:
        page.click("#export-json")
    exported = tmp_path / "c.json"
    info.value.save_as(exported)
    data = json.loads(exported.read_text("utf-8"))
    flat = json.dumps(data, ensure_ascii=False)
    assert question in flat
    assert user.console_errors == []


def test_new_chat_clicks_create_no_rows(make_browser_user, e2e_stack):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    for _ in range(3):
        page.click("#new-conversation")
        expect(chat.input).to_be_focused()
    assert conversation_ids(page, e2e_stack.app_url) == []
    expect(page.locator("#empty-state")).to_be_visible()
    chat.send_and_complete("Now one [[fake tokens=2]]")
    assert len(conversation_ids(page, e2e_stack.app_url)) == 1
    assert user.console_errors == []


def test_back_after_logging_in_goes_to_the_chat(make_browser_user, e2e_stack):
    """Issue 11 defect 4: Back to the login page once logged in shows the chat, not the
    login form with "Your account doesn't have access to this page"."""
    user = make_browser_user(locale="en-US")
    page = user.page
    page.goto(f"{e2e_stack.app_url}/ai/chat/")  # anonymous: sent to the login form
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.fill("#id_username", user.username)
    page.fill("#id_password", user.password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{e2e_stack.app_url}/ai/chat/")
    page.go_back()
    expect(page).to_have_url(f"{e2e_stack.app_url}/ai/chat/")
    expect(page.locator("#chat-input")).to_be_visible()
    expect(page.locator("#id_password")).to_have_count(0)
    # The login page itself, opened directly, sends a logged-in user to the chat too.
    page.goto(f"{e2e_stack.app_url}/accounts/login/")
    expect(page).to_have_url(f"{e2e_stack.app_url}/ai/chat/")
    assert user.console_errors == []

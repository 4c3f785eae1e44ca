"""The conversation sidebar in a real Chromium: new, switch, rename, delete, each surviving
a reload (so it reached the database, not only the page)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_page import UI_TIMEOUT_MS, ChatPage, expected

pytestmark = pytest.mark.e2e

CURRENT = re.compile(r"(^|\s)is-current(\s|$)")


def conversation_ids(page, app_url: str) -> list[str]:
    response = page.request.get(f"{app_url}/api/ai/conversations/")
    assert response.ok, response.status
    return [c["id"] for c in response.json()["conversations"]]


def test_new_switch_rename_delete(make_browser_user, e2e_stack):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    untitled = chat.title.inner_text()

    alpha = "Alpha question [[fake tokens=3]]"
    chat.send_and_complete(alpha)
    alpha_id = chat.current_conversation_id()
    expect(chat.conversations).to_have_count(1)

    # New: an empty chat, nothing current; the old one stays in the list. The server
    # creates the conversation with its first message, not before.
    page.click("#new-conversation")
    expect(chat.container.locator("article.message")).to_have_count(0)
    expect(page.locator("#empty-state")).to_be_visible()
    expect(chat.current_conversation).to_have_count(0)
    expect(chat.conversation(alpha_id)).not_to_have_class(CURRENT)
    expect(chat.title).to_have_text(untitled)
    expect(page).to_have_url(f"{e2e_stack.app_url}/ai/chat/")
    assert conversation_ids(page, e2e_stack.app_url) == [alpha_id]

    beta = "Beta question [[fake tokens=5]]"
    chat.send_and_complete(beta)
    expect(chat.conversations).to_have_count(2)
    beta_id = chat.current_conversation_id()
    assert beta_id != alpha_id
    expect(page).to_have_url(f"{e2e_stack.app_url}/ai/chat/{beta_id}/")
    # The first message names the conversation (the list refreshes after the answer).
    beta_title = chat.conversation(beta_id).locator(".conversation-title-text")
    expect(beta_title).to_contain_text("Beta question", timeout=UI_TIMEOUT_MS)
    expect(chat.title).to_contain_text("Beta question")
    beta_title = beta_title.inner_text()

    # Switch: the other conversation's history is loaded from the server.
    chat.conversation(alpha_id).locator(".conversation-link").click()
    expect(chat.conversation(alpha_id)).to_have_class(CURRENT)
    expect(chat.user_messages).to_have_count(1)
    expect(chat.user_messages.locator(".message-content")).to_have_text(alpha)
    expect(chat.answers).to_have_count(1)
    expect(chat.answers.locator(".message-content")).to_have_text(expected(alpha))
    expect(chat.last_answer).to_have_attribute("data-status", "complete")

    chat.conversation(beta_id).locator(".conversation-link").click()
    expect(chat.user_messages.locator(".message-content")).to_have_text(beta)
    expect(chat.answers.locator(".message-content")).to_have_text(expected(beta))
    expect(chat.conversation(beta_id)).to_have_class(CURRENT)

    # Rename (inline input, Enter saves) the conversation that is not current...
    alpha_item = chat.conversation(alpha_id)
    alpha_item.locator(".rename-conversation").click()
    rename_input = alpha_item.locator("input.rename-input")
    expect(rename_input).to_be_focused()
    rename_input.fill("  Renamed   alpha  ")
    rename_input.press("Enter")
    expect(rename_input).to_have_count(0)
    expect(alpha_item.locator(".conversation-title-text")).to_have_text("Renamed alpha")
    # ...and Escape cancels a rename.
    beta_item = chat.conversation(beta_id)
    beta_item.locator(".rename-conversation").click()
    beta_item.locator("input.rename-input").fill("Never saved")
    beta_item.locator("input.rename-input").press("Escape")
    expect(beta_item.locator("input.rename-input")).to_have_count(0)
    expect(beta_item.locator(".conversation-title-text")).to_have_text(beta_title)

    page.reload()
    expect(chat.conversation(alpha_id).locator(".conversation-title-text")).to_have_text(
        "Renamed alpha", timeout=UI_TIMEOUT_MS
    )
    expect(chat.conversation(beta_id).locator(".conversation-title-text")).to_have_text(beta_title)
    chat.conversation(alpha_id).locator(".conversation-link").click()
    expect(chat.title).to_have_text("Renamed alpha")

    # Delete the current conversation: confirm() is asked, the page moves to the other one.
    dialogs: list[str] = []

    def accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    chat.conversation(alpha_id).locator(".delete-conversation").click()
    expect(chat.conversation(alpha_id)).to_have_count(0)
    assert len(dialogs) == 1 and "Renamed alpha" in dialogs[0]
    expect(chat.conversations).to_have_count(1)
    expect(chat.conversation(beta_id)).to_have_class(CURRENT)
    expect(chat.user_messages.locator(".message-content")).to_have_text(beta)

    page.reload()
    expect(chat.conversation(beta_id)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(chat.conversation(alpha_id)).to_have_count(0)
    assert conversation_ids(page, e2e_stack.app_url) == [beta_id]

    # Dismissing the confirm() deletes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    chat.conversation(beta_id).locator(".delete-conversation").click()
    expect(chat.conversation(beta_id)).to_be_visible()
    assert conversation_ids(page, e2e_stack.app_url) == [beta_id]
    assert user.console_errors == []


def test_rename_survives_a_list_refresh_while_typing(make_browser_user, e2e_stack):
    """The list reloads itself after an answer; a rename typed meanwhile must still show."""
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    chat.send_and_complete("First [[fake tokens=2]]")
    conversation_id = chat.current_conversation_id()
    item = chat.conversation(conversation_id)

    answer = chat.send("Second [[fake tokens=10 pace=0.1]]")
    chat.wait_text_while_streaming(answer, 1)
    item.locator(".rename-conversation").click()
    rename_input = item.locator("input.rename-input")
    expect(rename_input).to_be_focused()
    with page.expect_response(
        lambda r: r.url.endswith("/api/ai/conversations/") and r.request.method == "GET",
        timeout=UI_TIMEOUT_MS,
    ):
        chat.wait_status(answer, "complete")
    rename_input.fill("Renamed while answering")
    rename_input.press("Enter")

    expect(item.locator(".conversation-title-text")).to_have_text("Renamed while answering")
    expect(chat.title).to_have_text("Renamed while answering")
    page.reload()
    expect(chat.conversation(conversation_id).locator(".conversation-title-text")).to_have_text(
        "Renamed while answering", timeout=UI_TIMEOUT_MS
    )
    assert user.console_errors == []


def test_the_answering_marker_stays_while_switching_away(make_browser_user):
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    chat.send_and_complete("Other [[fake tokens=2]]")
    other_id = chat.current_conversation_id()
    page.click("#new-conversation")
    answer = chat.send("Long one [[fake tokens=60 pace=0.1]]")
    chat.wait_text_while_streaming(answer, 5)
    live_id = chat.current_conversation_id()

    chat.conversation(other_id).locator(".conversation-link").click()
    expect(chat.conversation(other_id)).to_have_class(CURRENT)
    marker = chat.conversation(live_id).locator(".conversation-live")
    expect(marker).to_be_visible()
    # Still there after the list reloads itself (an answer elsewhere ended)...
    with page.expect_response(
        lambda r: r.url.endswith("/api/ai/conversations/") and r.request.method == "GET",
        timeout=UI_TIMEOUT_MS,
    ):
        chat.send_and_complete("Meanwhile [[fake tokens=2]]")
    expect(marker).to_be_visible()
    # ...and gone once that answer has ended.
    expect(marker).to_have_count(0, timeout=15_000)
    chat.conversation(live_id).locator(".conversation-link").click()
    chat.wait_status(chat.last_answer, "complete")
    assert user.console_errors == []


def test_sending_waits_until_the_opened_conversation_is_on_screen(make_browser_user):
    """A message sent while another conversation's history is on its way would land in
    that conversation but vanish from the screen when the history arrives: the composer
    holds it (text kept) until the conversation is shown."""
    user = make_browser_user()
    user.login()
    page = user.page
    chat = ChatPage(page)
    chat.send_and_complete("First [[fake tokens=2]]")
    first_id = chat.current_conversation_id()
    page.click("#new-conversation")
    chat.send_and_complete("Second [[fake tokens=2]]")

    held = []
    page.route("**/api/ai/chat/history/**", lambda route: held.append(route))
    chat.conversation(first_id).locator(".conversation-link").click()
    page.wait_for_function("() => document.querySelector('#chat-container[aria-busy=true]')")
    chat.input.fill("While loading [[fake tokens=2]]")
    expect(chat.send_button).to_be_disabled()
    chat.input.press("Enter")
    expect(chat.input).to_have_value("While loading [[fake tokens=2]]")
    assert len(held) == 1
    held[0].continue_()
    page.unroute("**/api/ai/chat/history/**")

    expect(chat.container).not_to_have_attribute("aria-busy", "true", timeout=UI_TIMEOUT_MS)
    expect(chat.answers).to_have_count(1)
    expect(chat.last_answer.locator(".message-content")).to_have_text(
        expected("First [[fake tokens=2]]")
    )
    answer = chat.send("While loading [[fake tokens=2]]")
    chat.wait_status(answer, "complete")
    expect(chat.answers).to_have_count(2)
    assert chat.current_conversation_id() == first_id
    assert user.console_errors == []


def test_delete_all_asks_first_then_deletes_everything(make_browser_user, e2e_stack):
    user = make_browser_user(locale="en-US")
    user.login()
    page = user.page
    chat = ChatPage(page)
    chat.send_and_complete("One [[fake tokens=2]]")
    page.click("#new-conversation")
    chat.send_and_complete("Two [[fake tokens=2]]")
    expect(chat.conversations).to_have_count(2)

    # Cancel keeps everything, and the keyboard goes back to the button.
    page.click("#delete-all-button")
    dialog = page.locator("#delete-all-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#delete-all-button")).to_be_focused()
    assert len(conversation_ids(page, e2e_stack.app_url)) == 2

    page.click("#delete-all-button")
    page.click("#delete-all-confirm")
    expect(chat.conversations).to_have_count(0)
    expect(page.locator("#empty-state")).to_be_visible()
    expect(page).to_have_url(f"{e2e_stack.app_url}/ai/chat/")
    expect(chat.input).to_be_focused()
    assert conversation_ids(page, e2e_stack.app_url) == []
    assert user.console_errors == []

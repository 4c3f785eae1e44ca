"""What the browser tests do on the chat page, in the page's own terms (its DOM contract).

Not a test module: the tests import it. Every wait is Playwright's auto-waiting `expect`
or `wait_for_function`, never a sleep.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.support.fake_upstream import expected_text

# Long enough for a paced fake answer on a loaded CI machine, short enough to fail fast.
STREAM_TIMEOUT_MS = 15_000
UI_TIMEOUT_MS = 5_000


def normalize(text: str) -> str:
    """Whitespace-insensitive form: innerText turns a paragraph's trailing space into nothing."""
    return " ".join(text.split())


def expected(message: str) -> str:
    return normalize(expected_text(message))


class ChatPage:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.input = page.locator("#chat-input")
        self.send_button = page.locator("#send-button")
        self.stop_button = page.locator("#stop-button")
        self.container = page.locator("#chat-container")
        self.title = page.locator("#conversation-title")
        self.conversations = page.locator("#conversation-list li.conversation-item")
        self.current_conversation = self.conversations.and_(page.locator(".is-current"))

    # --- messages

    @property
    def user_messages(self) -> Locator:
        return self.container.locator("article.message[data-role=user]")

    @property
    def answers(self) -> Locator:
        return self.container.locator("article.message[data-role=assistant]")

    @property
    def last_answer(self) -> Locator:
        return self.answers.last

    def answer_text(self, answer: Locator | None = None) -> str:
        answer = answer or self.last_answer
        return normalize(answer.locator(".message-content").inner_text())

    def send(self, message: str, *, type_it: bool = False) -> Locator:
        """Type the message and press Enter; returns the new answer's locator."""
        if type_it:
            self.input.click()
            self.input.press_sequentially(message)
        else:
            self.input.fill(message)
        # Enabled once no answer is on its way and the conversation on screen has loaded.
        expect(self.send_button).to_be_enabled()
        before = self.answers.count()
        self.input.press("Enter")
        expect(self.answers).to_have_count(before + 1, timeout=UI_TIMEOUT_MS)
        answer = self.answers.nth(before)
        expect(self.input).to_have_value("")
        return answer

    def wait_status(self, answer: Locator, status: str, timeout: int = STREAM_TIMEOUT_MS) -> None:
        expect(answer).to_have_attribute("data-status", status, timeout=timeout)

    def wait_text_while_streaming(self, answer: Locator, min_chars: int) -> int:
        """Wait until the answer holds at least min_chars while still streaming."""
        handle = answer.element_handle()
        length = self.page.wait_for_function(
            """([article, minChars]) => {
                const text = article.querySelector('.message-content').innerText.trim();
                return article.dataset.status === 'streaming' && text.length >= minChars
                    ? text.length : false;
            }""",
            arg=[handle, min_chars],
            timeout=STREAM_TIMEOUT_MS,
        ).json_value()
        return int(length)

    def send_and_complete(self, message: str) -> Locator:
        answer = self.send(message)
        self.wait_status(answer, "complete")
        expect(answer.locator(".message-content")).to_have_text(
            expected_text(message).strip(), timeout=UI_TIMEOUT_MS
        )
        return answer

    # --- conversations

    def conversation(self, conversation_id: str) -> Locator:
        return self.page.locator(
            f'#conversation-list li.conversation-item[data-conversation-id="{conversation_id}"]'
        )

    def current_conversation_id(self) -> str:
        expect(self.current_conversation).to_have_count(1, timeout=UI_TIMEOUT_MS)
        value = self.current_conversation.get_attribute("data-conversation-id")
        assert value
        return value

    # --- browser-side facts

    def history(self, app_url: str, conversation_id: str) -> list[dict]:
        """The conversation as the history API reports it (the page's session cookie)."""
        response = self.page.request.get(
            f"{app_url}/api/ai/chat/history/", params={"conversation_id": conversation_id}
        )
        assert response.ok, response.status
        return response.json()["history"]

    def inflight(self) -> dict | None:
        return self.page.evaluate("() => JSON.parse(sessionStorage.getItem('c3.inflight'))")

    def no_horizontal_scroll(self, width: int) -> None:
        scroll_width = self.page.evaluate("() => document.scrollingElement.scrollWidth")
        assert scroll_width <= width, f"page scrolls sideways: scrollWidth {scroll_width} > {width}"

    def screenshot(self, directory: Path, name: str) -> Path:
        path = directory / f"{name}.png"
        self.page.screenshot(path=str(path))
        assert path.stat().st_size > 0
        return path

"""Issue 11 features 4 and 5 with no model configured: the offline demo model answers in the
interface's language (the page sends it), and with one model the picker stays hidden.

A stack of its own: no OPENAI_BASE_URL or OPENAI_API_KEY (so the demo model answers) and
no OPENAI_MODELS (so there is one model).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.servers import Stack, running_stack

from .chat_page import ChatPage

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def e2e_stack(module_tmp: Path) -> Iterator[Stack]:
    env = {"OPENAI_BASE_URL": "", "OPENAI_API_KEY": "", "CHAT_AUTO_TITLE": "false"}
    with running_stack("sqlite", module_tmp, extra_env=env) as stack:
        yield stack


@pytest.mark.parametrize(
    ("locale", "says", "never"),
    [
        ("en-US", "offline demo model", "デモ"),
        ("ja-JP", "オフラインのデモモデル", "offline demo model"),
    ],
)
def test_the_demo_answers_in_the_interface_language_and_one_model_hides_the_picker(
    make_browser_user, locale, says, never
):
    user = make_browser_user(locale=locale)
    user.login()
    chat = ChatPage(user.page)
    # One model: nothing to pick, so no picker (it is in the DOM, hidden).
    expect(user.page.locator("#model-select")).to_be_hidden()
    answer = chat.send("hello demo")
    chat.wait_status(answer, "complete", timeout=60_000)
    text = chat.answer_text(answer)
    assert says in text and never not in text, text
    assert "hello demo" in text
    assert user.console_errors == []

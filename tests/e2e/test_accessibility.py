"""axe-core (frontend/node_modules, a devDependency) on every page state a user meets:
login, the empty chat, an answer with code and a table, the settings panel and the other
dialogs, the export menu, the phone layout,
each in light and dark. Zero violations of any impact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.chat_page import ChatPage

pytestmark = pytest.mark.e2e

AXE = Path(__file__).resolve().parents[2] / "frontend" / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page: Page) -> list[dict]:
    """Run axe on the page as it is now; the violations, shortened for a readable failure."""
    assert AXE.is_file(), f"{AXE} is missing: run `make assets` (npm ci installs axe-core)"
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated through the DevTools protocol, which the page's Content-Security-Policy
        # (script-src 'self', no inline scripts) does not govern; add_script_tag inlines
        # the file as a <script> and is refused by it. The page's own CSP stays in force.
        page.evaluate(AXE.read_text("utf-8") + "\n;undefined")
    # Colour contrast is computed from what is painted now: let finite CSS transitions
    # (the answer footer fades in on hover) finish first, or a half-faded text is measured.
    page.wait_for_function(
        """() => document.getAnimations().every(
            (a) => a.playState !== 'running' || !isFinite(a.effect.getComputedTiming().endTime))"""
    )
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "nodes": [(n["target"], n.get("failureSummary", "")[:200]) for n in v["nodes"][:5]],
        }
        for v in result["violations"]
    ]


def assert_no_violations(page: Page, where: str) -> None:
    violations = axe_violations(page)
    assert violations == [], f"{where}: {json.dumps(violations, indent=1, ensure_ascii=False)}"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_login_and_chat_pages_have_no_violations(make_browser_user, e2e_stack, scheme):
    user = make_browser_user(color_scheme=scheme)
    page = user.page
    page.goto(f"{e2e_stack.app_url}/accounts/login/")
    expect(page.locator("#id_username")).to_be_visible()
    assert_no_violations(page, f"login ({scheme})")

    user.login()
    chat = ChatPage(page)
    expect(page.locator("#empty-state")).to_be_visible()
    assert_no_violations(page, f"empty chat ({scheme})")

    answer = chat.send("Show me [[fake reply=markdown]]")
    chat.wait_status(answer, "complete")
    expect(answer.locator(".code-block pre")).to_have_count(1)
    expect(answer.locator("table")).to_have_count(1)
    # The answer's footer (copy, regenerate, time) shows on hover: check it shown.
    answer.hover()
    assert_no_violations(page, f"answer with code and a table ({scheme})")

    # The copy button's accessible name says what happened.
    copy = answer.locator(".copy-code-button")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy.click()
    expect(copy).to_have_attribute(
        "aria-label",
        page.evaluate(
            "() => JSON.parse(document.getElementById('chat-strings').textContent).copied"
        ),
    )

    page.locator("#settings-button").click()
    expect(page.locator("#settings-dialog")).to_be_visible()
    assert_no_violations(page, f"settings panel ({scheme})")
    page.keyboard.press("Escape")
    expect(page.locator("#settings-dialog")).to_be_hidden()

    page.locator("#export-button").click()
    expect(page.locator("#export-menu")).to_be_visible()
    assert_no_violations(page, f"export menu ({scheme})")
    page.keyboard.press("Escape")

    page.locator("#shortcuts-button").click()
    expect(page.locator("#shortcuts-dialog")).to_be_visible()
    assert_no_violations(page, f"shortcuts dialog ({scheme})")
    page.keyboard.press("Escape")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_layout_has_no_violations(make_browser_user, scheme):
    user = make_browser_user(
        viewport=(390, 844), is_mobile=True, has_touch=True, color_scheme=scheme
    )
    user.login()
    page = user.page
    chat = ChatPage(page)
    answer = chat.send("Show me [[fake reply=markdown]]")
    chat.wait_status(answer, "complete")
    assert_no_violations(page, f"phone, chat ({scheme})")
    page.click("#sidebar-toggle")
    expect(page.locator("#app")).to_have_class("app sidebar-open")
    assert_no_violations(page, f"phone, conversation list open ({scheme})")


def test_code_blocks_are_reachable_by_keyboard(make_browser_user):
    user = make_browser_user()
    user.login()
    chat = ChatPage(user.page)
    answer = chat.send("Show me [[fake reply=markdown]]")
    chat.wait_status(answer, "complete")
    pre = answer.locator(".code-block pre")
    expect(pre).to_have_attribute("tabindex", "0")
    expect(pre).to_have_attribute("aria-label", "python")
    pre.focus()
    expect(pre).to_be_focused()

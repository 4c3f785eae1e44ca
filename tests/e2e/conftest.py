"""Browser tests: Debian's Chromium driven by Playwright against the real servers.

The page is served by c3-app on 127.0.0.1 and the stream service on localhost (different
sites for the browser), so the page must use its bearer token, not a cookie. Every request
the browser makes is recorded, and a test fails if one leaves those two origins. Each test
module sets `pytestmark = pytest.mark.e2e`: that is what `make test` leaves out, saying so
in one line, where no Chromium is installed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import CHROMIUM
from tests.support.servers import Stack, running_stack

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
_users = itertools.count(1)


# Module scope: Playwright's sync API keeps an event loop running in the main thread while
# it is open, which would break later tests that call asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def e2e_stack(module_tmp: Path) -> Iterator[Stack]:
    env = {
        "STREAM_HEARTBEAT_SECONDS": "2",
        # Two models, so the page shows its model picker; titles stay the first message.
        "OPENAI_MODELS": "fake,fake-large",
        "CHAT_AUTO_TITLE": "false",
    }
    with running_stack("sqlite", module_tmp, extra_env=env) as stack:
        yield stack


@pytest.fixture(scope="session")
def screenshots(artifacts_dir: Path) -> Path:
    path = artifacts_dir / "screenshots"
    path.mkdir(exist_ok=True)
    return path


class BrowserUser:
    """A user with their own browser context (cookies, storage, language)."""

    def __init__(self, stack: Stack, context, username: str, password: str) -> None:
        self.stack, self.context = stack, context
        self.username, self.password = username, password
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        context.on("request", lambda request: self.requests.append(request.url))
        self.page = context.new_page()
        self.page.on(
            "console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None
        )
        self.page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))

    def login(self) -> None:
        page = self.page
        page.goto(f"{self.stack.app_url}/accounts/login/")
        page.fill("#id_username", self.username)
        page.fill("#id_password", self.password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{self.stack.app_url}/ai/chat/")
        page.wait_for_selector("#chat-input")

    def foreign_requests(self) -> list[str]:
        allowed = {
            urlsplit(self.stack.app_url).netloc,
            urlsplit(self.stack.stream_url).netloc,
        }
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob", "about")
            and urlsplit(url).netloc not in allowed
        ]


@pytest.fixture
def make_browser_user(e2e_stack: Stack, browser) -> Iterator:
    users: list[BrowserUser] = []

    def make(locale: str = "ja-JP", viewport: tuple[int, int] = (1280, 800), **kw) -> BrowserUser:
        username, password = f"e2e{next(_users)}", "pw-Secret-123"
        e2e_stack.create_user(username, password)
        context = browser.new_context(
            locale=locale,
            viewport={"width": viewport[0], "height": viewport[1]},
            extra_http_headers={"Accept-Language": locale},
            **kw,
        )
        user = BrowserUser(e2e_stack, context, username, password)
        users.append(user)
        return user

    yield make
    for user in users:
        foreign = user.foreign_requests()
        user.context.close()
        assert not foreign, f"requests left the two local origins: {foreign}"

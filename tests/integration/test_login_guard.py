"""Issue 8 item 9 on the real c3-app (gunicorn): password guessing is throttled per username
and per address (django-axes, the address from CLIENT_IP_HEADER), with a clear message in
Japanese and English; every page carries a Content-Security-Policy without inline code."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.chat_client import CSRF_INPUT
from tests.support.servers import Stack, running_stack

pytestmark = pytest.mark.integration

LIMIT = 3
PASSWORD = "pw-Secret-123"
_numbers = itertools.count(1)
_addresses = (f"203.0.113.{i}" for i in itertools.count(1))
LOCKED_JA = "ログインの失敗が多すぎます。"
LOCKED_EN = "Too many failed login attempts. Try again in 15 minutes."


@pytest.fixture(scope="module")
def stack(db_kind: str, module_tmp: Path) -> Iterator[Stack]:
    env = {"LOGIN_FAILURE_LIMIT": str(LIMIT), "CLIENT_IP_HEADER": "True-Client-IP"}
    with running_stack(db_kind, module_tmp, extra_env=env) as running:
        yield running


def new_user(stack: Stack) -> str:
    username = f"guard{next(_numbers)}"
    stack.create_user(username, PASSWORD)
    return username


def log_in(stack: Stack, username: str, password: str, address: str, language: str = "ja"):
    with httpx.Client(base_url=stack.app_url, timeout=30) as http:
        headers = {"True-Client-IP": address, "Accept-Language": language}
        page = http.get("/accounts/login/", headers=headers)
        csrf = CSRF_INPUT.search(page.text).group(1)
        return http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": csrf},
            headers={**headers, "Referer": f"{stack.app_url}/accounts/login/"},
        )


def test_a_username_is_locked_after_the_limit_even_with_the_right_password(stack):
    victim = new_user(stack)
    for _ in range(LIMIT - 1):
        # Each guess from a new address: the per-username count still adds up.
        assert log_in(stack, victim, "guess", next(_addresses)).status_code == 200
    # The guess that reaches the limit is answered with the lockout already.
    assert log_in(stack, victim, "guess", next(_addresses)).status_code == 429

    locked = log_in(stack, victim, PASSWORD, next(_addresses))
    assert locked.status_code == 429
    assert LOCKED_JA in locked.text
    assert int(locked.headers["retry-after"]) == 15 * 60
    english = log_in(stack, victim, PASSWORD, next(_addresses), language="en")
    assert english.status_code == 429 and LOCKED_EN in english.text
    # Other users are not affected.
    assert log_in(stack, new_user(stack), PASSWORD, next(_addresses)).status_code == 302


def test_an_address_is_locked_after_the_limit_whatever_the_username(stack):
    guesser = next(_addresses)
    for _ in range(LIMIT - 1):
        assert log_in(stack, new_user(stack), "guess", guesser).status_code == 200
    assert log_in(stack, new_user(stack), "guess", guesser).status_code == 429

    someone = new_user(stack)
    assert log_in(stack, someone, PASSWORD, guesser).status_code == 429
    # The same user from another address logs in: only the address was locked.
    assert log_in(stack, someone, PASSWORD, next(_addresses)).status_code == 302


def test_a_success_before_the_limit_resets_the_count(stack):
    user, address = new_user(stack), next(_addresses)
    for _ in range(2):
        for _ in range(LIMIT - 1):
            assert log_in(stack, user, "typo", address).status_code == 200
        assert log_in(stack, user, PASSWORD, address).status_code == 302


@pytest.mark.parametrize("path", ["/accounts/login/", "/ai/chat/"])
def test_pages_carry_a_content_security_policy_without_inline_code(stack, path):
    user = new_user(stack)
    with httpx.Client(base_url=stack.app_url, timeout=30) as http:
        if path != "/accounts/login/":
            page = http.get("/accounts/login/")
            csrf = CSRF_INPUT.search(page.text).group(1)
            http.post(
                "/accounts/login/",
                data={"username": user, "password": PASSWORD, "csrfmiddlewaretoken": csrf},
                headers={"Referer": f"{stack.app_url}/accounts/login/"},
            )
        response = http.get(path)
    assert response.status_code == 200
    policy = dict(
        (part.strip().split(" ", 1) + [""])[:2]
        for part in response.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert "unsafe-eval" not in response.headers["content-security-policy"]
    assert policy["frame-ancestors"] == "'none'"
    # The stream service's origin is allowed for the page's fetches, nothing else.
    assert policy["connect-src"] == f"'self' {stack.stream_url}"

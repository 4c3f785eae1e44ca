from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chat_client import ChatClient
from tests.support.servers import Stack, running_stack

_user_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def stack(db_kind: str, module_tmp: Path) -> Iterator[Stack]:
    with running_stack(db_kind, module_tmp) as running:
        yield running


@pytest.fixture
def make_client(stack: Stack) -> Iterator:
    """Create a fresh user and a logged-in client for it (each test its own user, so
    per-user limits and histories never leak between tests)."""
    clients: list[ChatClient] = []

    def make(username: str | None = None, password: str = "pw-Secret-123") -> ChatClient:
        username = username or f"user{next(_user_numbers)}"
        stack.create_user(username, password)
        client = ChatClient(stack.app_url, stack.stream_url)
        client.login(username, password)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()

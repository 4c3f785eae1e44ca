"""Issue 8 item 4: SQLite configured by DATABASE_URL=sqlite:///... gets the same options as
SQLITE_PATH (busy timeout, immediate transactions, WAL), so chats started at once on both
services all complete instead of failing with "database is locked"."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.fake_upstream import directive, expected_text
from tests.support.servers import Database, Stack

pytestmark = pytest.mark.integration

CHATS_PER_SERVICE = 7  # 14 at once; gunicorn runs 8 threads in the test stack


@pytest.fixture(scope="module")
def stack(module_tmp: Path) -> Iterator[Stack]:
    with Database("sqlite", module_tmp) as database:
        database.env = {"DATABASE_URL": f"sqlite:///{module_tmp / 'c3-url.sqlite3'}"}
        # Partial saves every 50 ms: many writers on one file at the same moment.
        extra = {"CHAT_SAVE_INTERVAL_SECONDS": "0.05"}
        with contextlib.ExitStack() as exits:
            yield exits.enter_context(Stack(database, module_tmp, extra_env=extra))


def test_concurrent_chats_on_both_services_all_complete(stack: Stack, make_client) -> None:
    clients = [make_client() for _ in range(4)]
    tokens = [client.token() for client in clients]
    jobs = [(i, via) for i in range(CHATS_PER_SERVICE) for via in ("stream", "app")]

    def chat(job: tuple[int, str]):
        i, via = job
        client, token = clients[i % 4], tokens[i % 4]
        message = f"chat {i} {via} " + directive(tokens=30, pace=0.01)
        # A new conversation per chat: all of them write at once.
        created = client.api("POST", "/api/ai/conversations/", json={"title": f"{i}{via}"})
        conversation_id = created.json()["id"]
        result = client.stream(
            {"message": message, "conversation_id": conversation_id}, via=via, token=token
        )
        return client, conversation_id, message, result

    with ThreadPoolExecutor(len(jobs)) as pool:
        outcomes = list(pool.map(chat, jobs))

    finals = [result.final.data for _, _, _, result in outcomes]
    assert [f["type"] for f in finals] == ["done"] * len(jobs), finals
    for client, conversation_id, message, result in outcomes:
        assert result.text == expected_text(message)
        stored = client.history(conversation_id)
        assert [(m["role"], m["status"]) for m in stored] == [
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        assert stored[1]["content"] == result.text
    assert "database is locked" not in stack.logs()

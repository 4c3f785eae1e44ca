"""Migration 0002_versions on a real database (SQLite and PostgreSQL): conversations stored
before versions existed come through whole, as one line of messages with the newest on
screen, and keep their titles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import Database, Stack

pytestmark = pytest.mark.integration

# Runs in `manage.py shell` at 0001: the historical models, since the current ones have
# columns that do not exist yet.
SEED = """
import datetime
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
apps = MigrationExecutor(connection).loader.project_state(("ai_features", "0001_initial")).apps
User = apps.get_model("auth", "User")
Conversation = apps.get_model("ai_features", "Conversation")
Message = apps.get_model("ai_features", "Message")
owner = User.objects.create(username="old-timer")
base = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
auto = Conversation.objects.create(owner=owner, title="first question")
typed = Conversation.objects.create(owner=owner, title="Named by me")
Conversation.objects.create(owner=owner, title="")  # empty
turns = [("user", "first question"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]
for conversation in (auto, typed):
    # Inserted out of order on purpose: created_at decides the line.
    for minute in (2, 0, 3, 1):
        role, text = turns[minute]
        m = Message.objects.create(conversation=conversation, role=role, content=text)
        Message.objects.filter(pk=m.pk).update(created_at=base + datetime.timedelta(minutes=minute))
"""

CHECK = """
import json
from ai_features.models import Conversation
out = {}
for c in Conversation.objects.order_by("created_at"):
    chain = []
    m = c.current_message
    while m is not None:
        chain.append(m.content)
        m = m.parent
    out[c.title or "(empty)"] = {"chain": chain, "custom": c.title_is_custom,
        "count": c.messages.count()}
print(json.dumps(out))
"""


@pytest.fixture
def unstarted_stack(db_kind: str, tmp_path: Path) -> Iterator[Stack]:
    with Database(db_kind, tmp_path) as database:
        yield Stack(database, tmp_path)  # not started: only manage.py is used


def test_existing_conversations_become_one_line_of_versions(unstarted_stack: Stack) -> None:
    unstarted_stack.manage("migrate", "ai_features", "0001", "--noinput", "-v", "0")
    unstarted_stack.manage("shell", "-c", SEED)
    unstarted_stack.manage("migrate", "--noinput", "-v", "0")

    result = json.loads(unstarted_stack.manage("shell", "-c", CHECK).stdout.splitlines()[-1])

    # From the message on screen up to the root: the newest answer first.
    line = ["a2", "q2", "a1", "first question"]
    assert result["first question"] == {"chain": line, "custom": False, "count": 4}
    assert result["Named by me"] == {"chain": line, "custom": True, "count": 4}
    assert result["(empty)"] == {"chain": [], "custom": False, "count": 0}

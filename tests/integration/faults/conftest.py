"""Stacks for the fault-injection suite.

Starting a stack costs seconds, so every module here shares one "faults" stack per database
kind (small timeouts, tight per-user limits), kept for the whole package; a module that
kills or restarts the stream service (test_shutdown.py) names its own profile and gets a
stack of its own that ends with the module. Each test uses fresh users, so per-user limits
and histories never leak between tests.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.support.fake_upstream as fake_upstream
from tests.support.servers import Database, Stack

from .helpers import User, UserFactory

# The knobs every module of this package relies on (see the tests for why each value).
PROFILES: dict[str, dict[str, str]] = {
    "faults": {
        # Timeouts fire fast; one SDK retry is enough to prove retrying (and cheap).
        "OPENAI_TIMEOUT": "1.5",
        "OPENAI_CONNECT_TIMEOUT": "1",
        "OPENAI_MAX_RETRIES": "1",
        # A slow first token of 4 heartbeats (1 s) stays well inside OPENAI_TIMEOUT.
        "STREAM_HEARTBEAT_SECONDS": "0.25",
        "STREAM_SEND_TIMEOUT_SECONDS": "2",
        "CHAT_SAVE_INTERVAL_SECONDS": "0.2",
        "CHAT_MAX_MESSAGE_CHARS": "300",
        "CHAT_MAX_CONCURRENT_STREAMS": "2",
        "CHAT_RATE_LIMIT_PER_MINUTE": "5",
    },
    "shutdown": {
        "OPENAI_TIMEOUT": "5",
        "OPENAI_MAX_RETRIES": "0",
        "STREAM_HEARTBEAT_SECONDS": "0.5",
        "STREAM_SHUTDOWN_GRACE_SECONDS": "2",
        "STREAM_STALE_AFTER_SECONDS": "1",
        "CHAT_SAVE_INTERVAL_SECONDS": "0.2",
    },
    "liveness": {
        # A dead generation is noticed 3 s after its last heartbeat (beats every second).
        "STREAM_STALE_AFTER_SECONDS": "3",
        "OPENAI_TIMEOUT": "10",
        "OPENAI_MAX_RETRIES": "0",
        "STREAM_HEARTBEAT_SECONDS": "0.5",
        "CHAT_SAVE_INTERVAL_SECONDS": "0.2",
    },
    "slow_body": {
        # A body must arrive within 2 s; at most 3 requests in progress in the stream service.
        "REQUEST_BODY_TIMEOUT_SECONDS": "2",
        "STREAM_MAX_CONNECTIONS": "3",
        "CHAT_RATE_LIMIT_PER_MINUTE": "100",
    },
}
SHARED_PROFILES = frozenset({"faults"})


class BulkFakeUpstream(fake_upstream.FakeUpstream):
    """The shipped fake upstream, run with one more canned reply (see bulk_upstream.py)."""

    module = "tests.integration.faults.bulk_upstream"


@contextlib.contextmanager
def faults_stack(db_kind: str, tmp: Path, profile: str) -> Iterator[Stack]:
    with Database(db_kind, tmp) as database:
        stack = Stack(database, tmp, extra_env=PROFILES[profile])
        stack.upstream = BulkFakeUpstream()
        with stack:
            yield stack


class StackPool:
    def __init__(self, tmp_factory: pytest.TempPathFactory) -> None:
        self.tmp_factory = tmp_factory
        self.exits = contextlib.ExitStack()
        self.stacks: dict[tuple[str, str], Stack] = {}

    def get(self, db_kind: str, profile: str) -> Stack:
        key = (db_kind, profile)
        if key not in self.stacks:
            tmp = self.tmp_factory.mktemp(f"{profile}-{db_kind}")
            self.stacks[key] = self.exits.enter_context(faults_stack(db_kind, tmp, profile))
        return self.stacks[key]


@pytest.fixture(scope="package")
def stack_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackPool]:
    pool = StackPool(tmp_path_factory)
    with pool.exits:
        yield pool


@pytest.fixture(scope="module")
def stack(request, db_kind: str, stack_pool: StackPool, module_tmp: Path) -> Iterator[Stack]:
    profile = getattr(request.module, "STACK_PROFILE", "faults")
    if profile in SHARED_PROFILES:
        yield stack_pool.get(db_kind, profile)
    else:
        with faults_stack(db_kind, module_tmp, profile) as running:
            yield running


_factories: dict[int, UserFactory] = {}
_prefixes = itertools.count(1)


@pytest.fixture
def make_user(stack: Stack) -> Iterator:
    """A fresh user with a session, per call (each test its own users)."""
    factory = _factories.get(id(stack))
    if factory is None or factory.stack is not stack:
        factory = _factories[id(stack)] = UserFactory(stack, f"f{next(_prefixes)}u")
    made: list[User] = []

    def make() -> User:
        username, session_key = factory.take()
        user = User(stack, username, session_key)
        made.append(user)
        return user

    yield make
    for user in made:
        user.close()

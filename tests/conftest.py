"""Fixtures shared by every test package (test settings: tests/support/test_env.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import REDIS_SERVER, RedisServer, redis_server_available
from tests.support.servers import ARTIFACTS, POSTGRES_ADMIN_DSN, postgres_available

# --- Real-server fixtures -------------------------------------------------------------------


# CI sets C3_REQUIRE_POSTGRES=1 / C3_REQUIRE_CHROMIUM=1 / C3_REQUIRE_REDIS=1: there a
# missing service fails the run instead of skipping it.
REQUIRE_POSTGRES = os.environ.get("C3_REQUIRE_POSTGRES") == "1"
REQUIRE_CHROMIUM = os.environ.get("C3_REQUIRE_CHROMIUM") == "1"
REQUIRE_REDIS = os.environ.get("C3_REQUIRE_REDIS") == "1"
CHROMIUM = os.environ.get("C3_CHROMIUM", "/usr/bin/chromium")
_skipped_notes: list[str] = []


def _postgres_ok() -> bool:
    if not hasattr(_postgres_ok, "cached"):
        _postgres_ok.cached = postgres_available()
    return _postgres_ok.cached


MISSING = {
    "redis": f"C3_REQUIRE_REDIS=1 but {REDIS_SERVER} is missing",
    "postgres": f"C3_REQUIRE_POSTGRES=1 but {POSTGRES_ADMIN_DSN} is unreachable",
    "e2e": f"Chromium is required (C3_REQUIRE_CHROMIUM=1) but {CHROMIUM} is missing",
}


def _missing_required_service() -> str | None:
    """Why the run must fail before any test: a service CI requires is missing."""
    if REQUIRE_REDIS and not redis_server_available():
        return MISSING["redis"]
    if REQUIRE_POSTGRES and not _postgres_ok():
        return MISSING["postgres"]
    if REQUIRE_CHROMIUM and not Path(CHROMIUM).exists():
        return MISSING["e2e"]
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # Under pytest-xdist the workers collect, and a pytest.exit() there surfaces in the
    # controller as an INTERNALERROR that hides the reason. So the controller checks the
    # required services itself, before it starts any worker (whatever tests are selected).
    if session.config.pluginmanager.has_plugin("dsession"):
        reason = _missing_required_service()
        if reason:
            pytest.exit(reason, 3)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], {"postgres": [], "e2e": [], "redis": []}
    need_pg = any("postgres" in item.keywords for item in items)
    pg_ok = _postgres_ok() if need_pg else True
    chromium_ok = Path(CHROMIUM).exists()
    redis_ok = redis_server_available()
    for item in items:
        if "redis" in item.keywords and not redis_ok:
            if REQUIRE_REDIS:
                pytest.exit(MISSING["redis"], 3)
            drop["redis"].append(item)
        elif "postgres" in item.keywords and not pg_ok:
            if REQUIRE_POSTGRES:
                pytest.exit(MISSING["postgres"], 3)
            drop["postgres"].append(item)
        elif "e2e" in item.keywords and not chromium_ok:
            if REQUIRE_CHROMIUM:
                pytest.exit(MISSING["e2e"], 3)
            drop["e2e"].append(item)
        else:
            keep.append(item)
    if drop["postgres"]:
        _skipped_notes.append(
            f"skipped {len(drop['postgres'])} PostgreSQL runs: no server at {POSTGRES_ADMIN_DSN}"
        )
    if drop["e2e"]:
        _skipped_notes.append(
            f"skipped {len(drop['e2e'])} browser tests: no Chromium at {CHROMIUM}"
        )
    if drop["redis"]:
        _skipped_notes.append(
            f"skipped {len(drop['redis'])} Redis tests: no redis-server at {REDIS_SERVER}"
        )
    dropped = drop["postgres"] + drop["e2e"] + drop["redis"]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_sessionfinish(session: pytest.Session) -> None:
    # An xdist worker hands its notes to the controller, which prints the summary.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["c3_skipped_notes"] = list(_skipped_notes)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    # Every worker collects the whole selection, so each sends the same notes: keep one.
    for note in getattr(node, "workeroutput", {}).get("c3_skipped_notes", []):
        if note not in _skipped_notes:
            _skipped_notes.append(note)


def pytest_terminal_summary(terminalreporter) -> None:
    for note in _skipped_notes:
        terminalreporter.write_line(note, yellow=True)


# --- Parallel runs: `make test` runs `pytest -n 2 --dist loadfile` (README.md, Tests) -----

# Packages whose modules go to one worker, one after another: one Chromium at a time, with
# its stack; the fault-injection package shares its stacks (tests/integration/faults/
# conftest.py: stack_pool) and holds the timer-bound modules (stop, slow client, shutdown,
# liveness), which should not run against each other.
SERIAL_PACKAGES = {"tests/e2e/": "e2e", "tests/integration/faults/": "faults"}


def work_unit_of(nodeid: str) -> str:
    """What one xdist worker runs as a whole: the test's package in SERIAL_PACKAGES, else
    its file, so that a module's module-scoped stack and database start once."""
    path = nodeid.split("::", 1)[0]
    for prefix, group in SERIAL_PACKAGES.items():
        if path.startswith(prefix):
            return group
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    # `--dist loadfile`, with the packages above as one unit each. Not xdist_group marks
    # and `--dist loadgroup`: with pytest 9.2 those are silently ignored (the group rides
    # on a node id pytest no longer lets a plugin rewrite; pytest-xdist issue #1386).
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class PackageOrFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit_of(nodeid)

    return PackageOrFileScheduling(config, log)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every test that takes `db_kind` runs on SQLite and on PostgreSQL.
    # `postgres_only`: a behaviour that exists only there (e.g. a row-lock interleaving
    # that SQLite's BEGIN IMMEDIATE rules out), so no SQLite variant is generated at all
    # rather than one that would always skip.
    if "db_kind" in metafunc.fixturenames:
        kinds = [pytest.param("postgres", marks=pytest.mark.postgres)]
        if metafunc.definition.get_closest_marker("postgres_only") is None:
            kinds.insert(0, "sqlite")
        metafunc.parametrize("db_kind", kinds, scope="module")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("stack")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server (tests marked `redis`), empty, on its own port; a test may
    stop() and start() it to simulate an outage."""
    log_dir = ARTIFACTS / "server-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with RedisServer(log_dir) as server:
        yield server


@pytest.fixture
def redis_url(settings: Any, redis_server: RedisServer) -> str:
    """settings.REDIS_URL pointing at the module's redis-server, started again if an earlier
    test of the module stopped it."""
    if not redis_server.running:
        redis_server.start()
    settings.REDIS_URL = redis_server.url
    return redis_server.url


@pytest.fixture(scope="module")
def upstream_server() -> Iterator[FakeUpstream]:
    """The fake OpenAI-compatible upstream (tests/support/fake_upstream.py), one per module."""
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def upstream(upstream_server: FakeUpstream) -> FakeUpstream:
    """The module's fake upstream, its counters reset for this test."""
    upstream_server.reset()
    return upstream_server

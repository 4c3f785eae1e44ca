"""c3-app under gunicorn with two workers (gunicorn.conf.py, as render.yaml starts it): one
/metrics scrape shows the sum over both workers, and a worker that dies leaves its counters
in the sum and takes its live gauge with it.

gunicorn.conf.py makes the multiprocess directory itself (no PROMETHEUS_MULTIPROC_DIR is
given); the test points TMPDIR at its own folder to find it, and reads each worker's file
there to check that both workers really served streams (the scrape alone could not tell a
sum from one worker's count)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.support import metrics
from tests.support.chat_client import ChatClient
from tests.support.fake_upstream import directive, expected_text
from tests.support.metrics import Samples
from tests.support.servers import ARTIFACTS, Server, Stack, free_port, running_stack

pytestmark = pytest.mark.integration

TOKEN = "gunicorn-metrics-token-0123456789"
PASSWORD = "pw-Secret-123"
COMPLETE = ("c3_streams_total", (("status", "complete"),))


@pytest.fixture(scope="module")
def stack(db_kind: str, module_tmp: Path) -> Iterator[Stack]:
    with running_stack(db_kind, module_tmp, extra_env={"METRICS_TOKEN": TOKEN}) as running:
        yield running


@pytest.fixture(scope="module")
def tmpdir_for_gunicorn(module_tmp: Path) -> Path:
    path = module_tmp / "gunicorn-tmp"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def two_workers(stack: Stack, tmpdir_for_gunicorn: Path) -> Iterator[Server]:
    port = free_port()
    env = stack.env()
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # gunicorn.conf.py must make a fresh one
    env.update({"WEB_CONCURRENCY": "2", "TMPDIR": str(tmpdir_for_gunicorn)})
    server = Server(
        "gunicorn-2-workers",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "c3_app.wsgi:application",
            "-c",
            "gunicorn.conf.py",  # the worker count comes from WEB_CONCURRENCY, as deployed
            "--bind",
            f"127.0.0.1:{port}",
            # One thread and one connection per worker, no keep-alive: while one worker
            # serves a stream, the next connection can only be accepted by the other one.
            "--threads",
            "1",
            "--worker-connections",
            "1",
            "--keep-alive",
            "0",
            "--graceful-timeout",
            "5",
        ],
        env,
        port,
        ARTIFACTS / "server-logs",
    )
    server.start()
    assert server.process is not None
    wait_until_loaded(server.process.pid, tmpdir_for_gunicorn)
    yield server
    server.stop()


def wait_until_loaded(master: int, tmpdir_for_gunicorn: Path, timeout: float = 60) -> None:
    """The server counts as up once one worker answers; on a busy machine the other may
    still be loading the app. Both have once their metrics files exist."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(master)
        made = list(tmpdir_for_gunicorn.glob("c3-metrics-*"))
        if (
            len(pids) == 2
            and made
            and all((made[0] / f"gauge_livesum_{pid}.db").exists() for pid in pids)
        ):
            return
        time.sleep(0.1)
    raise AssertionError("gunicorn's two workers did not both load the app")


def scrape(port: int) -> Samples:
    return metrics.scrape(f"http://127.0.0.1:{port}", TOKEN)


def worker_pids(master: int) -> set[int]:
    """The live (not zombie) child processes of the gunicorn master."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            state, ppid = stat.read_text().rpartition(")")[2].split()[:2]
        except OSError:
            continue  # exited meanwhile
        if int(ppid) == master and state != "Z":
            pids.add(int(stat.parent.name))
    return pids


def metrics_dir(tmpdir_for_gunicorn: Path) -> Path:
    made = list(tmpdir_for_gunicorn.glob("c3-metrics-*"))
    assert len(made) == 1, made
    return made[0]


def completed_per_pid(directory: Path) -> dict[int, float]:
    """c3_streams_total{status="complete"} as each worker process wrote it."""
    per_pid: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, *_ = json.loads(key)
            if name == "c3_streams_total" and labels == {"status": "complete"}:
                per_pid[pid] = per_pid.get(pid, 0.0) + value
    return per_pid


def wait_for_workers(
    master: int, count: int, without: int | None = None, timeout: float = 30
) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(master)
        if len(pids) == count and without not in pids:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"gunicorn has {worker_pids(master)} workers, wanted {count}")


def test_gunicorn_conf_makes_the_directory_and_both_workers_write_there(
    two_workers: Server, tmpdir_for_gunicorn: Path
) -> None:
    assert two_workers.process is not None
    pids = wait_for_workers(two_workers.process.pid, 2)
    directory = metrics_dir(tmpdir_for_gunicorn)
    # Each worker opened its own files when it loaded the app and so imported the metrics
    # (the live gauge has no labels, so its file exists from then on).
    files = [directory / f"gauge_livesum_{pid}.db" for pid in pids]
    assert all(f.exists() for f in files), (pids, sorted(os.listdir(directory)))


def logged_in(stack: Stack, server: Server, username: str) -> ChatClient:
    stack.create_user(username, PASSWORD)
    client = ChatClient(f"http://127.0.0.1:{server.port}", stack.stream_url)
    client.login(username, PASSWORD)
    return client


def test_one_scrape_shows_the_sum_over_both_workers(
    stack: Stack, two_workers: Server, tmpdir_for_gunicorn: Path
) -> None:
    on_two = logged_in(stack, two_workers, "sum-user")
    before = scrape(two_workers.port)
    waves, per_wave = 3, 2
    # Each fallback stream holds its worker's only connection for about a second, so the
    # two streams of a wave are served by different workers.
    message = directive(tokens=8, pace=0.12)
    with ThreadPoolExecutor(per_wave) as pool:
        for wave in range(waves):
            bodies = [{"message": f"w{wave}s{i} {message}"} for i in range(per_wave)]
            for body, result in zip(
                bodies, pool.map(lambda b: on_two.stream(b, via="app"), bodies), strict=True
            ):
                assert result.status == 200
                assert result.final.type == "done", result.events[-1:]
                assert result.text == expected_text(body["message"])
    total = waves * per_wave

    per_pid = completed_per_pid(metrics_dir(tmpdir_for_gunicorn))
    served = {pid: n for pid, n in per_pid.items() if n > 0}
    assert len(served) == 2, per_pid  # both workers ran streams...
    expected = before.get(COMPLETE, 0) + total
    assert sum(per_pid.values()) == expected
    # ...and whichever worker answers a scrape (each on a new connection), it shows the sum.
    for _ in range(6):
        assert scrape(two_workers.port).get(COMPLETE, 0) == expected
    on_two.close()


def test_a_dead_worker_keeps_its_counts_and_loses_its_live_gauge(
    stack: Stack, two_workers: Server, tmpdir_for_gunicorn: Path
) -> None:
    assert two_workers.process is not None
    master = two_workers.process.pid
    on_two = logged_in(stack, two_workers, "kill-user")
    result = on_two.stream({"message": "before the kill " + directive(tokens=3)}, via="app")
    assert result.final.type == "done"
    on_two.close()
    before = scrape(two_workers.port).get(COMPLETE, 0)

    directory = metrics_dir(tmpdir_for_gunicorn)
    counts = completed_per_pid(directory)
    # The worker with the most streams, so that the sum would visibly drop if its counts went.
    victim = max(wait_for_workers(master, 2), key=lambda pid: counts.get(pid, 0))
    assert counts.get(victim, 0) > 0
    os.kill(victim, signal.SIGKILL)
    wait_for_workers(master, 2, without=victim)
    # child_exit ran in the master: the dead worker's live gauge is out of the sum.
    assert not (directory / f"gauge_livesum_{victim}.db").exists()
    assert (directory / f"counter_{victim}.db").exists()
    wait_until_healthy(two_workers.port)
    for _ in range(4):
        assert scrape(two_workers.port).get(COMPLETE, 0) == before


def wait_until_healthy(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("c3-app did not answer after the worker restart")

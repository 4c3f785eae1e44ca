"""`make bench`: how cheaply c3-app-stream relays tokens, as multiples of Python's floor.

python -m bench.run [--quick] [--sqlite] [--only cpu,gaps,...] [--no-redis] [--json PATH]
                    [--profile PATH [--profile-during cpu|burst] [--profile-gil]]
                    [--gap-levels 100,300]

Starts the lean fake upstream (bench/upstream.py), the reference relay (bench/relay.py),
c3-app-stream exactly as `start_stream.sh` runs it (DEBUG off, a fresh PostgreSQL database
at 127.0.0.1:5432, or SQLite with --sqlite) and, for the WSGI fallback, c3-app under gunicorn
with render.yaml's start command. The same load goes straight to the upstream ("direct"),
through the relay and through the service; see bench/README.md for what each figure means.

Unless --no-redis, a second c3-app-stream ("service_redis": the same command, the same
database, REDIS_URL pointing at a private redis-server on a free port) takes the cpu, ttft,
burst loads and the first gap level, so that the table shows the service without and with
Redis side by side (the memory and WSGI figures are taken without Redis only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.loadgen import StreamResult, Target, install_fast_loop, run_sequential, run_streams

# The same PostgreSQL server (C3_TEST_POSTGRES) as the integration tests.
from tests.support.redis_server import RedisServer, redis_server_available
from tests.support.servers import POSTGRES_ADMIN_DSN, Server, free_port

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SCENARIOS = ("memory", "cpu", "ttft", "burst", "gaps", "wsgi")
# The targets every latency scenario compares; "service_redis" joins them unless --no-redis.
BASE_TARGETS = ("direct", "relay", "service")
REDIS_TARGET = "service_redis"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STREAM_PATH = "/api/ai/chat/stream/"
# The servers start and stop on a machine the load may keep busy: more time than the tests.
START_TIMEOUT = 60
STOP_TIMEOUT = 20


@dataclass(frozen=True)
class Sizes:
    """Loads of the full run (the issue's) and of --quick (a smoke test, same shape)."""

    cpu: tuple[int, int, float] = (100, 100, 0.02)  # streams, tokens, pace
    gap_levels: tuple[int, ...] = (100, 300, 1000)
    gap_load: tuple[int, float] = (40, 0.05)  # tokens, pace
    burst: tuple[int, int, float] = (100, 5, 0.02)
    single: int = 20  # one-at-a-time streams for the added time to first token
    memory: tuple[int, int, float] = (300, 20, 0.4)
    wsgi_load: tuple[int, float] = (40, 0.05)  # tokens, pace; streams = waves x the cap
    wsgi_waves: int = 3
    users: int = 100
    timeout: float = 90.0


FULL = Sizes()
QUICK = Sizes(
    cpu=(10, 20, 0.02),
    gap_levels=(10, 30),
    gap_load=(10, 0.05),
    burst=(10, 5, 0.02),
    single=3,
    memory=(20, 10, 0.2),
    wsgi_load=(10, 0.05),
    wsgi_waves=2,
    users=10,
    timeout=60.0,
)


# --------------------------------------------------------------------------- processes


def get_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def _stat_cpu_seconds(stat: Path) -> float:
    """User + system CPU from a /proc `stat` file (a process's or one thread's); 0 once the
    process is gone."""
    with contextlib.suppress(OSError):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (gunicorn's workers), from /proc."""
    return sum(_stat_cpu_seconds(Path(f"/proc/{each}/stat")) for each in _descendants(pid))


def loop_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process's main thread (its task id is the pid): in the
    stream service, the event loop. The rest of the process's CPU is its other threads'
    (the database threads)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def fresh_database(sqlite: bool, tmp: Path) -> Iterator[dict[str, str]]:
    if sqlite:
        yield {"SQLITE_PATH": str(tmp / "bench.sqlite3")}
        return
    import psycopg

    name = f"c3_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"DATABASE_URL": f"{POSTGRES_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"}
    finally:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def service_env(db_env: dict[str, str], upstream_port: int, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    for key in ("DATABASE_URL", "SUPABASE_DB_HOST", "REDIS_URL", "STREAM_API_URL"):
        env.pop(key, None)
    env.update(db_env)
    env.update(
        {
            # start_stream.sh runs `uvicorn` from PATH: this virtualenv's.
            "PATH": os.pathsep.join([str(VENV_BIN), *os.get_exec_path()]),
            "C3_ENV_FILE": "/nonexistent/.env",  # a developer's .env must not change the figures
            "DJANGO_SETTINGS_MODULE": "c3_app.settings",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback
            "STATIC_MANIFEST": "false",
            "STATIC_ROOT": str(tmp),  # no static files are served here
            "LOG_LEVEL": "WARNING",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
            "OPENAI_API_KEY": "sk-bench-not-a-key",
            "OPENAI_MODEL": "fake",
            # The per-user limits protect the service from one user; here they would only
            # measure themselves.
            "CHAT_RATE_LIMIT_PER_MINUTE": "0",
            "CHAT_MAX_CONCURRENT_STREAMS": "0",
            "STREAM_TOKEN_MAX_AGE_SECONDS": "3600",
        }
    )
    return env


def gunicorn_argv(port: int) -> tuple[list[str], int, int]:
    """render.yaml's start command for c3-app, on a loopback port; and its workers x threads
    (gunicorn.conf.py's, from WEB_CONCURRENCY and GUNICORN_THREADS unless the command says)."""
    import yaml

    services = yaml.safe_load((ROOT / "render.yaml").read_text())["services"]
    app = next(s for s in services if s["name"] == "c3-app")
    argv = shlex.split(app["startCommand"].replace("$PORT", str(port)))
    env = {v["key"]: str(v["value"]) for v in app.get("envVars", []) if "value" in v}
    workers = int(env.get("WEB_CONCURRENCY", os.environ.get("WEB_CONCURRENCY", "2")))
    threads = int(env.get("GUNICORN_THREADS", os.environ.get("GUNICORN_THREADS", "8")))
    if "--workers" in argv:
        workers = int(argv[argv.index("--workers") + 1])
    if "--threads" in argv:
        threads = int(argv[argv.index("--threads") + 1])
    # On the command line, these win over gunicorn.conf.py (which binds 0.0.0.0:$PORT).
    extra = ["--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)]
    return [str(VENV_BIN / argv[0]), *argv[1:], *extra], workers, threads


# --------------------------------------------------------------------------- figures


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def summary(results: list[StreamResult]) -> dict[str, Any]:
    ttfts = [r.ttft for r in results if r.ttft is not None]
    gaps = [g for r in results for g in r.gaps()]
    errors = Counter(r.error or f"status {r.status}" for r in results if not r.completed)
    return {
        "streams": len(results),
        "completed": sum(r.completed for r in results),
        "tokens": sum(r.tokens for r in results),
        "ttft_p50_ms": ms(percentile(ttfts, 50)),
        "ttft_p99_ms": ms(percentile(ttfts, 99)),
        "gap_p50_ms": ms(percentile(gaps, 50)),
        "gap_p99_ms": ms(percentile(gaps, 99)),
        "failures": dict(errors),
    }


def most_open_at_once(results: list[StreamResult]) -> int:
    """How many streams were delivering at the same moment (first token .. end)."""
    edges = []
    for r in results:
        if r.first_token_at is not None and r.ended_at is not None:
            edges += [(r.first_token_at, 1), (r.ended_at, -1)]
    most = current = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        current += step
        most = max(most, current)
    return most


def message(tokens: int, pace: float) -> str:
    return f"bench [[fake tokens={tokens} pace={pace}]]"


class Bench:
    # The servers and settings run() sets up, for the scenarios it then calls.
    env: dict[str, str]
    targets: dict[str, Target]
    redis: RedisServer | None
    service_redis: Server | None

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        sizes = QUICK if args.quick else FULL
        self.sizes = replace(sizes, gap_levels=args.gap_levels) if args.gap_levels else sizes
        self.only = set(args.only.split(",")) if args.only else set(SCENARIOS)
        self.figures: dict[str, Any] = {}
        self.logs = tmp / "logs"
        self.logs.mkdir()

    # --- helpers ----------------------------------------------------------------------

    def upstream_stats(self) -> dict[str, float]:
        return get_json(f"http://127.0.0.1:{self.upstream.port}/_stats")

    async def load(
        self, name: str, count: int, text: str, pid: int | None = None, *, patient: bool = False
    ) -> dict[str, Any]:
        """One burst of `count` streams against target `name`, with CPU per token.

        `patient`: wait up to the full timeout, so that CPU per token covers every stream
        even on a server that falls far behind (latency scenarios give up sooner)."""
        target = self.targets[name]
        before_up = self.upstream_stats()
        before_cpu = cpu_seconds(pid) if pid else 0.0
        before_loop = loop_thread_cpu_seconds(pid) if pid else 0.0
        # With Redis, redis-server's own CPU is part of the price of a relayed token.
        redis_server = self.redis if name == REDIS_TARGET else None
        redis_pid = redis_server.process.pid if redis_server and redis_server.process else None
        before_redis = cpu_seconds(redis_pid) if redis_pid else 0.0
        before_commands = self.redis_commands() if redis_pid else 0
        timeout = self.sizes.timeout if patient else self.timeout_for(text)
        results = await run_streams(target, text, count, timeout=timeout)
        await self.settle(pid)
        after_up = self.upstream_stats()
        figures = summary(results)
        produced = after_up["tokens"] - before_up["tokens"]
        up_cpu = after_up["cpu_seconds"] - before_up["cpu_seconds"]
        up_per_token = round(up_cpu / produced * 1e6, 2) if produced else None
        figures["upstream_cpu_per_token_us"] = up_per_token
        if pid:
            relayed = figures["tokens"]
            cpu = cpu_seconds(pid) - before_cpu
            figures["cpu_per_token_us"] = round(cpu / relayed * 1e6, 2) if relayed else None
            if relayed:
                # Where it went: the event loop's thread, and every other thread (in the
                # service: the database threads, which still run authentication's lookups
                # and the ORM's rarer work; a stream's own statements run on the loop).
                loop = loop_thread_cpu_seconds(pid) - before_loop
                figures["loop_thread_cpu_per_token_us"] = round(loop / relayed * 1e6, 2)
                figures["other_threads_cpu_per_token_us"] = round((cpu - loop) / relayed * 1e6, 2)
            if relayed and produced and up_cpu > 0:
                figures["cpu_ratio_to_upstream"] = round((cpu / relayed) / (up_cpu / produced), 2)
            if redis_pid and relayed:
                redis_cpu = cpu_seconds(redis_pid) - before_redis
                figures["redis_server_cpu_per_token_us"] = round(redis_cpu / relayed * 1e6, 2)
                # Commands, not round trips (a pipeline carries several): the producer's
                # XADD per event plus its per-batch EXPIRE and heartbeats; readers in the
                # producing process add none.
                commands = self.redis_commands() - before_commands
                figures["redis_commands_per_token"] = round(commands / relayed, 2)
        figures["results"] = results
        return figures

    def timeout_for(self, text: str) -> float:
        """Generous for a slow server, yet bounded: an overloaded one shows up as streams
        not completed, not as a benchmark that never ends."""
        tokens, pace = (float(v.split("=")[1]) for v in text.strip("]").split()[-2:])
        return min(self.sizes.timeout, tokens * pace * 3 + 10)

    @staticmethod
    async def settle(pid: int | None, quiet_share: float = 0.05, limit: float = 15) -> None:
        """Wait until the server is idle again (it may still be storing final states, or
        generating streams whose reader timed out), so the next load starts from zero."""
        await asyncio.sleep(0.3)
        if not pid:
            return
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = cpu_seconds(pid)
            await asyncio.sleep(0.5)
            if cpu_seconds(pid) - before <= 0.5 * quiet_share:
                return

    @staticmethod
    def public(figures: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in figures.items() if k != "results"}

    # --- scenarios ---------------------------------------------------------------------

    async def memory(self) -> None:
        count, tokens, pace = self.sizes.memory
        pid = self.service.pid
        before = rss_kib(pid)
        results: list[StreamResult] = []
        text = message(tokens, pace)
        task = asyncio.create_task(
            run_streams(
                self.targets["service"], text, count,
                timeout=self.sizes.timeout, results=results,
            )
        )  # fmt: skip
        # Sample while every stream is open (all have their first token, none ended).
        peak, deadline = before, time.monotonic() + tokens * pace * 0.8
        while time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.1)
            peak = max(peak, rss_kib(pid))
            started = sum(r.first_token_at is not None for r in results)
            if results and started == count:
                break
        open_streams = sum(r.first_token_at is not None and r.ended_at is None for r in results)
        peak = max(peak, rss_kib(pid))
        await task
        await self.settle(pid)
        self.figures["memory"] = {
            "streams": count,
            "open_when_sampled": open_streams,
            "rss_before_kib": before,
            "rss_open_kib": peak,
            "per_stream_kib": round((peak - before) / max(open_streams, 1), 1),
            "completed": sum(r.completed for r in results),
        }

    async def cpu(self) -> None:
        count, tokens, pace = self.sizes.cpu
        text = message(tokens, pace)
        out: dict[str, Any] = {"streams": count, "tokens": tokens, "pace_s": pace}
        profiler = self.start_profiler() if self.profiling("cpu") else None
        for name, pid in self.pids().items():
            if name != "service" and profiler:
                continue
            out[name] = self.public(await self.load(name, count, text, pid, patient=True))
        if profiler:
            self.stop_profiler(profiler)
            for name, pid in self.pids().items():
                if name != "service":
                    out[name] = self.public(await self.load(name, count, text, pid, patient=True))
        relay = out["relay"]
        services = [n for n in ("service", REDIS_TARGET) if n in out]
        for name in services:
            if relay.get("cpu_per_token_us") and out[name].get("cpu_per_token_us"):
                out[name]["cpu_ratio_to_relay"] = round(
                    out[name]["cpu_per_token_us"] / relay["cpu_per_token_us"], 2
                )
        out["streams_per_core_at_50_tokens_per_s"] = {
            name: int(1e6 / (out[name]["cpu_per_token_us"] * 50))
            for name in ("relay", *services)
            if out[name].get("cpu_per_token_us")
        }
        self.figures["cpu"] = out

    async def ttft(self) -> None:
        """Added time to first token, one stream at a time."""
        out: dict[str, Any] = {"streams": self.sizes.single}
        for name in self.compared():
            results = await run_sequential(
                self.targets[name], message(3, 0), self.sizes.single, timeout=30
            )
            out[name] = self.public(summary(results))
        self.added(out, "ttft_p50_ms")
        self.figures["ttft_single"] = out

    async def burst(self) -> None:
        count, tokens, pace = self.sizes.burst
        out: dict[str, Any] = {"streams": count}
        for name in self.compared():
            profiler = None
            if name == "service" and self.profiling("burst"):
                profiler = self.start_profiler()
                await asyncio.sleep(1)  # py-spy attaches before the burst (it lasts ~1 s)
            # With its CPU: a burst is mostly starts, so this is what a start costs.
            pid = self.pids()[name] or None
            figures = await self.load(name, count, message(tokens, pace), pid)
            if figures.get("cpu_per_token_us") is not None:
                cpu_ms = figures["cpu_per_token_us"] * tokens / 1000
                loop_ms = figures["loop_thread_cpu_per_token_us"] * tokens / 1000
                figures["cpu_per_stream_ms"] = round(cpu_ms, 2)
                figures["loop_thread_cpu_per_stream_ms"] = round(loop_ms, 2)
            out[name] = self.public(figures)
            if profiler:
                self.stop_profiler(profiler)
        self.added(out, "ttft_p50_ms")
        self.added(out, "ttft_p99_ms")
        self.figures["ttft_burst"] = out

    @staticmethod
    def added(out: dict[str, Any], key: str) -> None:
        direct = out["direct"].get(key)
        for name in ("relay", "service", REDIS_TARGET):
            value = out.get(name, {}).get(key)
            if direct is not None and value is not None:
                out[name][f"added_{key}"] = round(value - direct, 2)

    async def gaps(self) -> None:
        tokens, pace = self.sizes.gap_load
        out: dict[str, Any] = {"tokens": tokens, "pace_s": pace, "levels": {}}
        best: dict[str, int] = {}
        for level in self.sizes.gap_levels:
            row = {}
            for name, pid in self.pids().items():
                if name == REDIS_TARGET and level != self.sizes.gap_levels[0]:
                    continue  # the Redis run takes the first level only (time budget)
                figures = self.public(await self.load(name, level, message(tokens, pace), pid))
                row[name] = figures
                p99 = figures["gap_p99_ms"]
                if figures["completed"] == level and p99 is not None and p99 < 100:
                    best[name] = max(best.get(name, 0), level)
            out["levels"][str(level)] = row
        out["max_streams_gap_p99_under_100ms"] = {name: best.get(name, 0) for name in BASE_TARGETS}
        self.figures["gaps"] = out

    async def wsgi(self) -> None:
        """The WSGI fallback holds one worker thread per open stream: streams beyond
        workers x threads wait for a thread, which their time to first token shows."""
        port = free_port()
        argv, workers, threads = gunicorn_argv(port)
        cap = workers * threads
        gunicorn = Server("gunicorn", argv, self.env, port, self.logs).start(timeout=START_TIMEOUT)
        try:
            tokens, pace = self.sizes.wsgi_load
            creds = self.credentials
            self.targets["wsgi"] = Target(
                "wsgi", "127.0.0.1", port, STREAM_PATH,
                headers=[
                    {
                        "Cookie": f"sessionid={c['session_key']}; csrftoken={c['csrf_cookie']}",
                        "X-CSRFToken": c["csrf_header"],
                    }
                    for c in creds
                ],
            )  # fmt: skip
            # Each worker imports the app and starts its core loop on its first request.
            for _ in range(2):
                await run_streams(self.targets["wsgi"], message(2, 0.01), cap, timeout=60)
            count = cap * self.sizes.wsgi_waves
            figures = await self.load("wsgi", count, message(tokens, pace), gunicorn.pid)
            results = figures.pop("results")
            first = sorted(r.ttft for r in results if r.ttft is not None)
            self.figures["wsgi"] = {
                "command": shlex.join([Path(argv[0]).name, *argv[1:]]),
                "workers": workers,
                "threads": threads,
                "cap": cap,
                "stream_seconds": round(tokens * pace, 2),
                "most_open_at_once": most_open_at_once(results),
                # The first `cap` streams start at once; the next wave waits for a thread.
                "ttft_first_wave_p99_ms": ms(percentile(first[:cap], 99)),
                "ttft_next_waves_p50_ms": ms(percentile(first[cap:], 50)),
                **figures,
            }
        finally:
            gunicorn.stop(timeout=STOP_TIMEOUT)

    # --- profiler ----------------------------------------------------------------------

    def profiling(self, scenario: str) -> bool:
        return bool(self.args.profile) and self.args.profile_during == scenario

    def start_profiler(self) -> subprocess.Popen:
        return subprocess.Popen(  # noqa: S603
            [str(VENV_BIN / "py-spy"), "record", "--pid", str(self.service.pid), "--rate", "250",
             "--format", "raw", "--output", str(self.args.profile), "--threads",
             *(["--gil"] if self.args.profile_gil else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop_profiler(self, profiler: subprocess.Popen) -> None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)
        self.figures["profile"] = summarise_profile(Path(self.args.profile))

    # --- the run -----------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        pids = {"direct": 0, "relay": self.relay.pid, "service": self.service.pid}
        if self.service_redis is not None:
            pids[REDIS_TARGET] = self.service_redis.pid
        return pids

    def compared(self) -> tuple[str, ...]:
        return (*BASE_TARGETS, REDIS_TARGET) if self.service_redis is not None else BASE_TARGETS

    def start_redis_service(self, port: int) -> None:
        """The second service: start_stream.sh again, with REDIS_URL on a private
        redis-server (empty, nothing on disk), checked to really use it."""
        self.redis = RedisServer(self.logs)
        self.redis.start()
        self.service_redis = Server(
            "service-redis", ["bash", "start_stream.sh"],
            {**self.env, "PORT": str(port), "REDIS_URL": self.redis.url}, port, self.logs,
        ).start(timeout=START_TIMEOUT)  # fmt: skip
        health = get_json(f"http://127.0.0.1:{port}/health/")
        if health.get("redis") != "ok":
            raise RuntimeError(f"service_redis does not reach its Redis: {health}")
        self.targets[REDIS_TARGET] = Target(
            REDIS_TARGET, "127.0.0.1", port, STREAM_PATH,
            headers=self.targets["service"].headers,
        )  # fmt: skip

    def redis_client(self) -> Any:
        import redis

        assert self.redis is not None
        return redis.Redis.from_url(self.redis.url)

    def redis_commands(self) -> int:
        with self.redis_client() as client:
            return int(client.info("stats")["total_commands_processed"])

    def redis_figures(self) -> dict[str, Any]:
        """Evidence that the Redis run went through Redis: the event logs it holds."""
        with self.redis_client() as client:
            return {
                "event_logs_in_redis": sum(1 for _ in client.scan_iter("c3:log:*", count=1000)),
                "commands_processed": int(client.info("stats")["total_commands_processed"]),
            }

    async def run(self) -> dict[str, Any]:
        with fresh_database(self.args.sqlite, self.tmp) as db_env:
            up_port, relay_port, service_port = free_port(), free_port(), free_port()
            self.redis = None
            self.service_redis = None
            python = str(VENV_BIN / "python")
            self.upstream = Server(
                "upstream", [python, "-m", "bench.upstream", "--port", str(up_port)],
                dict(os.environ), up_port, self.logs,
            ).start(timeout=START_TIMEOUT)  # fmt: skip
            self.relay = Server(
                "relay",
                [python, "-m", "bench.relay", "--port", str(relay_port),
                 "--upstream", f"127.0.0.1:{up_port}"],
                dict(os.environ), relay_port, self.logs,
            )  # fmt: skip
            self.env = service_env(db_env, up_port, self.tmp)
            self.service = Server(
                "service", ["bash", "start_stream.sh"], {**self.env, "PORT": str(service_port)},
                service_port, self.logs,
            )  # fmt: skip
            try:
                self.relay.start(timeout=START_TIMEOUT)
                subprocess.run(  # noqa: S603
                    [python, "manage.py", "migrate", "--noinput", "-v", "0"],
                    cwd=ROOT, env=self.env, check=True,
                )  # fmt: skip
                self.credentials = json.loads(
                    subprocess.run(  # noqa: S603
                        [python, "-m", "bench.credentials", str(self.sizes.users)],
                        cwd=ROOT,
                        env=self.env,
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout  # fmt: skip
                )
                self.service.start(timeout=START_TIMEOUT)
                self.targets = {
                    "direct": Target(
                        "direct", "127.0.0.1", up_port, "/v1/chat/completions", kind="openai"
                    ),
                    "relay": Target("relay", "127.0.0.1", relay_port, STREAM_PATH),
                    "service": Target(
                        "service",
                        "127.0.0.1",
                        service_port,
                        STREAM_PATH,
                        headers=[
                            {"Authorization": f"Bearer {c['stream_token']}"}
                            for c in self.credentials
                        ],
                    ),  # fmt: skip
                }
                if self.args.redis:
                    self.start_redis_service(free_port())
                # Warm-up, not measured: imports, first connections, code paths, and each
                # user's first conversation (with its one title request).
                for name in self.compared():
                    count = self.sizes.users if name == "service" else 10
                    await run_streams(self.targets[name], message(5, 0.01), count, timeout=60)
                    await self.settle(self.pids()[name])
                for scenario in SCENARIOS:  # memory first: later loads leave freed memory
                    if scenario in self.only:
                        started = time.monotonic()
                        await getattr(self, scenario)()
                        print(f"  {scenario}: {time.monotonic() - started:.1f} s", file=sys.stderr)
                if self.service_redis is not None:
                    self.figures["redis"] = self.redis_figures()
            finally:
                for process in (self.service_redis, self.service, self.relay, self.upstream):
                    if process is not None:
                        process.stop(timeout=STOP_TIMEOUT)
                if self.redis is not None:
                    self.redis.stop()
        return self.figures


# --------------------------------------------------------------------------- profile


PROFILE_GROUPS = {
    "openai SDK + pydantic (building chunk objects)": ("(openai/", "(pydantic"),
    "httpx/httpcore (upstream HTTP)": (
        "(httpx/",
        "(httpcore/",
        "(httpx2/",
        "(httpcore2/",
        "(h11/",
        # The SDK's aiohttp transport (openai[aiohttp]) and what aiohttp runs on.
        "(aiohttp/",
        "(aiohappyeyeballs/",
        "(yarl/",
        "(multidict/",
    ),
    "prometheus_client (metrics)": ("(prometheus_client/",),
    "database (Django ORM, psycopg/sqlite3, sync_to_async)": (
        "(django/db/",
        "(psycopg/",
        "sqlite3",
        "(asgiref/",
    ),
    "auth (stream token, session, user)": ("auth/tokens.py", "(django/contrib/"),
    "sse-starlette + anyio (SSE response)": ("(sse_starlette/", "(anyio/"),
    "uvicorn (HTTP server)": ("(uvicorn/",),
    "starlette/fastapi (routing, middleware)": ("(starlette/", "(fastapi/"),
    "streaming core (ai_features/chat)": ("ai_features/chat/",),
    "stream service adapter (ai_features/stream_app: routes, SSE response)": (
        "ai_features/stream_app/",
    ),
    "json": ("(json/",),
    "asyncio (event loop, tasks)": ("(asyncio/", "uvloop"),
}
# Stack tops where a thread only waits (py-spy counts a few of these as active): a DB
# round trip, an idle executor thread, the event loop in epoll.
WAITING_LEAVES = (
    "Connection.wait (psycopg/",
    "_worker (concurrent/futures/thread.py",
    "Runner.run (asyncio/runners.py",
    "wait (threading.py",
    "select (selectors.py",
)


def _innermost_group(frames: list[str]) -> str:
    for frame in reversed(frames):
        for group, needles in PROFILE_GROUPS.items():
            if any(needle in frame for needle in needles):
                return group
    return "other"


def summarise_profile(path: Path) -> dict[str, Any]:
    """Where the service's CPU goes: shares of the busy samples per group (each sample goes
    to the group of its innermost frame that belongs to one: time in pydantic called by
    the SDK counts for the SDK, not for the core that called the SDK), per thread, and the
    functions on top of the stack; plus the share of samples that were only waiting."""
    total = waiting = 0
    groups: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if frames[-1].startswith(WAITING_LEAVES):
            waiting += count
            continue
        # With --threads the first frame names the thread: "process 12:"python ..."" etc.
        threads[frames[0].rsplit('"', 2)[-2] if frames[0].count('"') >= 2 else frames[0]] += count
        groups[_innermost_group(frames)] += count
        leaves[frames[-1]] += count
    busy = total - waiting

    def share(n: int) -> float:
        return round(100 * n / busy, 1) if busy else 0.0

    return {
        "samples": total,
        "waiting_percent_of_samples": round(100 * waiting / total, 1) if total else 0.0,
        "busy_threads_percent": {name: share(n) for name, n in threads.most_common(5)},
        "busy_groups_percent": {name: share(n) for name, n in groups.most_common()},
        "top_functions_percent": {name: share(n) for name, n in leaves.most_common(15)},
    }


# --------------------------------------------------------------------------- output


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import django

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "platform": platform.platform(),
    }


def fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def incomplete(figures: dict[str, Any]) -> str:
    done, streams = figures["completed"], figures["streams"]
    return "" if done == streams else f" ({done}/{streams} done)"


def table(figures: dict[str, Any]) -> str:
    """The performance table; the "+ redis" column is the same service with REDIS_URL set
    (empty where a figure is taken without Redis only, or with --no-redis)."""
    rows: list[tuple[str, ...]] = []  # six cells each: label, four targets, goal

    def cell(section: dict[str, Any], name: str, key: str, suffix: str = "") -> str:
        return fmt(section[name].get(key)) + suffix if name in section else ""

    cpu = figures.get("cpu")
    if cpu:
        label = f"CPU/token µs ({cpu['streams']}×{cpu['tokens']} @{cpu['pace_s'] * 1000:.0f}ms)"
        up = cpu["service"].get("upstream_cpu_per_token_us")
        redis_server = cpu.get(REDIS_TARGET, {}).get("redis_server_cpu_per_token_us")
        rows.append((label, fmt(up), fmt(cpu["relay"].get("cpu_per_token_us")),
                     fmt(cpu["service"].get("cpu_per_token_us")),
                     cell(cpu, REDIS_TARGET, "cpu_per_token_us"), ""))  # fmt: skip
        for key, what in (("loop_thread", "event-loop thread"), ("other_threads", "other threads")):
            rows.append((f"  of which {what}", "", "",
                         fmt(cpu["service"].get(f"{key}_cpu_per_token_us")),
                         cell(cpu, REDIS_TARGET, f"{key}_cpu_per_token_us"), ""))  # fmt: skip
        if redis_server is not None:
            rows.append(("  + redis-server's own CPU/token µs", "", "", "", fmt(redis_server),
                         ""))  # fmt: skip
        rows.append(("  × upstream CPU/token", "1", fmt(cpu["relay"].get("cpu_ratio_to_upstream")),
                     fmt(cpu["service"].get("cpu_ratio_to_upstream")),
                     cell(cpu, REDIS_TARGET, "cpu_ratio_to_upstream"), "≤ 2.5"))  # fmt: skip
        rows.append(("  × reference relay", "", "1", fmt(cpu["service"].get("cpu_ratio_to_relay")),
                     cell(cpu, REDIS_TARGET, "cpu_ratio_to_relay"), "≤ 1.3 (stretch)"))  # fmt: skip
        per_core = cpu["streams_per_core_at_50_tokens_per_s"]
        rows.append(("streams per core @ 50 tok/s", "", fmt(per_core.get("relay")),
                     fmt(per_core.get("service")),
                     fmt(per_core.get(REDIS_TARGET)) if REDIS_TARGET in cpu else "",
                     ""))  # fmt: skip
    single = figures.get("ttft_single")
    if single:
        rows.append(("TTFT one at a time p50 ms", fmt(single["direct"]["ttft_p50_ms"]),
                     fmt(single["relay"]["ttft_p50_ms"]), fmt(single["service"]["ttft_p50_ms"]),
                     cell(single, REDIS_TARGET, "ttft_p50_ms"),
                     "+≤ 10 over direct"))  # fmt: skip
    burst = figures.get("ttft_burst")
    if burst:
        for key in ("ttft_p50_ms", "ttft_p99_ms"):
            rows.append((f"TTFT {burst['streams']} at once {key[5:8]} ms",
                         fmt(burst["direct"][key]), fmt(burst["relay"][key]),
                         fmt(burst["service"][key]), cell(burst, REDIS_TARGET, key),
                         "+≤ 250 over direct" if key == "ttft_p99_ms" else ""))  # fmt: skip
    gaps = figures.get("gaps")
    if gaps:
        for level, row in gaps["levels"].items():
            for key in ("gap_p50_ms", "gap_p99_ms"):
                cells = [
                    fmt(row[n][key]) + incomplete(row[n]) if n in row else ""
                    for n in (*BASE_TARGETS, REDIS_TARGET)
                ]
                target = "≤ 100 (at 300)" if key == "gap_p99_ms" else ""
                rows.append((f"gap {level} streams {key[4:7]} ms", *cells, target))
        best = gaps["max_streams_gap_p99_under_100ms"]
        rows.append(("most streams, gap p99 < 100 ms", fmt(best["direct"]), fmt(best["relay"]),
                     fmt(best["service"]), "", f"of {list(gaps['levels'])}"))  # fmt: skip
    memory = figures.get("memory")
    if memory:
        rows.append((f"memory per open stream KiB ({memory['open_when_sampled']} open)", "", "",
                     fmt(memory["per_stream_kib"]), "", "≤ 64"))  # fmt: skip
    lines = [
        f"{'figure':44} {'direct':>14} {'relay':>14} {'service':>20} {'service + redis':>20}"
        "  target"
    ]
    lines += [f"{a:44} {b:>14} {c:>14} {d:>20} {r:>20}  {e}" for a, b, c, d, r, e in rows]
    wsgi = figures.get("wsgi")
    if wsgi:
        lines.append(
            f"WSGI fallback ({wsgi['workers']} workers × {wsgi['threads']} threads = "
            f"{wsgi['cap']} streams): {wsgi['streams']} streams of {wsgi['stream_seconds']} s "
            f"-> at most {wsgi['most_open_at_once']} open at once; TTFT first wave p99 "
            f"{fmt(wsgi['ttft_first_wave_p99_ms'])} ms, later waves p50 "
            f"{fmt(wsgi['ttft_next_waves_p50_ms'])} ms; "
            f"CPU/token {fmt(wsgi.get('cpu_per_token_us'))} µs"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small loads (a smoke test)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--profile", type=Path, help="py-spy the service under one load")
    parser.add_argument(
        "--profile-during",
        choices=("cpu", "burst"),
        default="cpu",
        help="the load --profile records: cpu (default) or burst (the start path)",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="sample only the thread holding the GIL (py-spy --gil): where Python's CPU goes, "
        "without threads that wait for the GIL showing up at whatever line they stopped",
    )
    parser.add_argument(
        "--redis",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the service with REDIS_URL on a private redis-server (default on)",
    )
    parser.add_argument(
        "--gap-levels",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        help="comma-separated stream counts of the gaps load (default 100,300,1000)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS) if args.only else set()
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.redis and not redis_server_available():
        print("redis-server not found: the Redis run is left out (--no-redis)", file=sys.stderr)
        args.redis = False
    loop = install_fast_loop()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="c3-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        figures = asyncio.run(bench.run())
    figures["run"] = {
        "database": "sqlite" if args.sqlite else "postgresql",
        "quick": args.quick,
        "redis": args.redis,
        "client_loop": loop,
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine(),
    }
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""500 concurrent generations through one API process, and the API's own per-request overhead.

Starts a stub function (another process: a small asyncio HTTP server that answers like the real
function after --delay seconds) and the API under uvicorn (one worker, PostgreSQL in a schema of
its own, or SQLite with --sqlite). Then:

1. --n concurrent POST /v1/generations (sync) from one user: wall time, successes, the API
   process's peak RSS (VmHWM) — with the shared pooled client, and with a baseline forwarder that
   builds a new httpx client per request (no pooled connections), in the same run.
2. Overhead: a 3 MB phone photo (bench/strip.py's) POSTed to the API vs straight to the stub
   (answering at once); medians of --repeat sequential requests; also the time the API spends
   preparing it (the thin path: header checks and a lossless metadata strip) against the old
   decode/downscale/re-encode (bench/strip.py's baseline), in this process.
3. --n concurrent async uploads (`Prefer: respond-async`, answered 202) from one user, with
   WORK_QUEUE=inprocess and then WORK_QUEUE=cloud_tasks (the real google-cloud-tasks client
   against tests/api/cloud_tasks_fake.py's FakeGoogle, run in this process): the time until all
   are accepted, and until all have finished (polled; for Cloud Tasks, this process plays the
   queue: each recorded task is posted back to the API with its OIDC token, at most --dispatch
   at once, again after a short backoff while the API answers non-2xx). Then the enqueue's own
   cost: api.work.cloud_tasks.CloudTasksQueue against the same fake, --n calls at once and
   --repeat one at a time. Goals: --n accepted within 2 s on one worker; enqueue <= 5 ms median.
4. Observability's cost: the API's CPU per sync generation (--observability-n at once from one
   user, through the stub answering at once, so that no time is spent waiting) with metrics and
   JSON logs off (METRICS_ENABLED=false, uvicorn's logging as in the other sections: warnings,
   no access lines) and on (METRICS_ENABLED=true, LOG_FORMAT=json, `--log-config
   api/observability/logging.json`, as api/observability/logs.py has uvicorn started: INFO, one
   api.access line per request; stdout to a file). Both servers run throughout; after a warm-up
   burst each, they take a burst in turn, --rounds times, off first in odd rounds and on first
   in even ones (two noisy cores: the medians are compared, and each round's ratio shown).
   Also the log lines (by logger) and bytes the "on" server wrote per generation, a scrape of
   its /metrics (avatar_generations_total), and the "off" one's /metrics (404).
   Goal: on <= 1.05 x off.

--only SECTION (sync, async, overhead, observability; repeatable) runs only those.

    .venv/bin/python bench/concurrency.py [--n 500] [--delay 5] [--repeat 30] [--sqlite]
        [--async-delay SECONDS] [--dispatch 100] [--observability-n 300] [--rounds 3]
        [--only SECTION]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from benchproc import free_port, memory_mb, wait_up

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BIN = Path(sys.executable).parent


# --- the stub function (runs in its own process: `concurrency.py --stub PORT DELAY`) ---------


# A face as the real function reports it (box and landmarks in the upload's pixels).
FACE = {
    "box": {"x": 210.0, "y": 120.0, "width": 220.0, "height": 240.0},
    "landmarks": {"left_eye": {"x": 360.0, "y": 210.0}, "right_eye": {"x": 280.0, "y": 210.0}},
    "confidence": 0.97,
}


def stub_answer(body: bytes) -> bytes:
    """A valid function answer naming the object after the form's user and generation ids."""
    fields = dict(re.findall(rb'name="(user_id|generation_id)"\r\n\r\n([^\r]*)', body))
    user = fields.get(b"user_id", b"u").decode()
    generation = fields.get(b"generation_id", b"g").decode()
    return json.dumps(
        {
            "image_url": "http://stub/ignored.jpg",
            "object_name": f"avatars/{user}/{generation}.jpg",
            "animal": "cat",
            "faces": [FACE],
            "backend": "stub",
            "timings_ms": {"total": 1.0},
        }
    ).encode()


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
            body = await reader.readexactly(length)
            await asyncio.sleep(delay_s)
            answer = stub_answer(body)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, TypeError):
        pass
    finally:
        writer.close()


async def run_stub(port: int, delay_s: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: serve_connection(r, w, delay_s), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


# --- the baseline forwarder (loaded by the API process: --factory concurrency:baseline_app) ---


class NewClientPerRequest:
    """The naive forwarder: a fresh httpx.AsyncClient (and TCP connection) for every call."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings

    async def generate(self, request: Any) -> Any:
        from api.forwarding.client import FunctionClient
        from api.forwarding.retry import RetryPolicy

        settings = self._settings
        timeout = httpx.Timeout(
            settings.function_timeout_s, connect=settings.function_connect_timeout_s
        )
        async with httpx.AsyncClient(timeout=timeout) as http:
            policy = RetryPolicy(settings.function_max_attempts, settings.function_retry_budget_s)
            client = FunctionClient([http], settings.function_url, policy=policy)
            return await client.generate(request)

    async def aclose(self) -> None:
        return None


def baseline_app() -> Any:
    """The API with the baseline forwarder (a uvicorn --factory)."""
    from api.main import create_app

    return create_app(forwarder_factory=NewClientPerRequest)


# --- orchestration --------------------------------------------------------------------------


@contextmanager
def process(
    command: list[str], env: dict[str, str] | None = None, **popen: Any
) -> Iterator[subprocess.Popen[Any]]:
    """A child process, terminated (killed if it lingers) when the block ends."""
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env or dict(os.environ), **popen)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def database(use_sqlite: bool, name: str = "bench_concurrency") -> Iterator[str]:
    """A migrated database of the bench's own: a PostgreSQL schema `name` (dropped after) or a
    file."""
    from benchdb import migrate, private_schema

    if use_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            migrate(url)
            yield url
        return
    base = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    with private_schema(base, name) as url:
        yield url


# uvicorn's logging in every section but the observability one: warnings only, no access lines.
QUIET_LOGS = ("--log-level", "warning", "--no-access-log")


@contextmanager
def api_server(
    database_url: str,
    function_url: str,
    factory: str,
    extra_env: dict[str, str] | None = None,
    log_args: Sequence[str] = QUIET_LOGS,
    stdout: Any = None,
) -> Iterator[tuple[str, int]]:
    """The API under uvicorn (one worker): its url and pid. `log_args` are uvicorn's logging
    options; `stdout` where the process's output goes (None: this process's)."""
    port = free_port()
    media = tempfile.TemporaryDirectory(prefix="bench-media-")
    env = dict(os.environ) | {
        "DATABASE_URL": database_url,
        "FUNCTION_URL": function_url,
        "RATE_LIMIT_GENERATIONS": "1000000",
        "STORAGE_DIR": media.name,
        "PYTHONPATH": f"{REPO_ROOT / 'bench'}:{REPO_ROOT}",
        "WORK_URL": f"http://127.0.0.1:{port}",  # where the queue posts jobs (Cloud Tasks only)
    }
    env |= extra_env or {}
    command = [str(BIN / "uvicorn"), factory, "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", *log_args, "--backlog", "4096"]  # fmt: skip
    with media, process(command, env, stdout=stdout) as proc:
        wait_up(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{port}", proc.pid


def small_selfie() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (640, 480), (180, 140, 120)).save(out, "JPEG", quality=85)
    return out.getvalue()


async def sign_up(client: httpx.AsyncClient) -> dict[str, str]:
    name = f"bench{uuid.uuid4().hex[:10]}"
    response = await client.post("/v1/users", json={"username": name, "email": f"{name}@b.test"})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['api_key']}"}


def multipart_request(host: str, key: str, image: bytes, prefer: str | None = None) -> bytes:
    """The bytes of one POST /v1/generations, built once and sent many times."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="animal"\r\n\r\ncat\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="s.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/generations HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        + (f"Prefer: {prefer}\r\n" if prefer else "")
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def exchange_raw(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    """Send prepared bytes on a new connection: the answer's status code (0 if none) and body."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
        writer.close()
    except OSError:
        return 0, b""
    match = re.match(rb"HTTP/1\.1 (\d{3})", answer)
    return (int(match[1]) if match else 0), answer.partition(b"\r\n\r\n")[2]


async def burst(api_url: str, n: int) -> tuple[float, int, dict[int, int]]:
    """n concurrent sync generations from one user: (wall seconds, successes, status counts).

    The load is sent as prepared bytes on raw sockets: an httpx client doing 500 multipart
    requests would take a core of its own from the two this machine has.
    """
    host, port, request = await prepared_generation(api_url)
    wall, counts = await send_all(host, port, request, n)
    return wall, counts.get(201, 0), dict(counts)


async def prepared_generation(api_url: str) -> tuple[str, int, bytes]:
    """A new user's sync generation, as bytes to send: the API's host, port and the request."""
    async with httpx.AsyncClient(base_url=api_url) as client:
        key = (await sign_up(client))["Authorization"].removeprefix("Bearer ")
    host, port = api_url.removeprefix("http://").split(":")
    return host, int(port), multipart_request(host, key, small_selfie())


async def send_all(host: str, port: int, request: bytes, n: int) -> tuple[float, Counter[int]]:
    """The request sent n times at once: wall seconds until all were answered, status counts."""
    started = time.perf_counter()
    answers = await asyncio.gather(*(exchange_raw(host, port, request) for _ in range(n)))
    return time.perf_counter() - started, Counter(status for status, _ in answers)


async def timed_posts(client: httpx.AsyncClient, url: str, headers: dict[str, str], image: bytes,
                      repeat: int) -> list[float]:  # fmt: skip
    times = []
    for _ in range(repeat + 2):
        started = time.perf_counter()
        response = await client.post(
            url, headers=headers, files={"image": ("p.jpg", image, "image/jpeg")},
            data={"animal": "cat"},
        )  # fmt: skip
        assert response.status_code in (200, 201), response.text
        times.append((time.perf_counter() - started) * 1000)
    return times[2:]  # the first two warm connections and caches


async def overhead(api_url: str, function_url: str, repeat: int) -> dict[str, float]:
    """Medians (ms) of the same uploads sent straight to the stub and through the API."""
    from strip import baseline, phone_jpeg, thin, timings_ms

    photo, small = phone_jpeg(), small_selfie()
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        headers = await sign_up(client)
        result = {
            "direct": statistics.median(await timed_posts(client, function_url, {}, photo, repeat)),
            "via_api": statistics.median(
                await timed_posts(client, "/v1/generations", headers, photo, repeat)
            ),
            "small_direct": statistics.median(
                await timed_posts(client, function_url, {}, small, repeat)
            ),
            "small_via_api": statistics.median(
                await timed_posts(client, "/v1/generations", headers, small, repeat)
            ),
        }
    prepare_ms, _ = timings_ms(thin, photo, repeat)
    decode_ms, _ = timings_ms(baseline, photo, repeat)
    return result | {"bytes": len(photo), "prepare": prepare_ms, "decode": decode_ms}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_burst(label: str, database_url: str, function_url: str, factory: str, n: int) -> None:
    with api_server(database_url, function_url, factory) as (api_url, pid):
        api_cpu, own_cpu = cpu_seconds(pid), time.process_time()
        wall, ok, counts = asyncio.run(burst(api_url, n))
        api_cpu, own_cpu = cpu_seconds(pid) - api_cpu, time.process_time() - own_cpu
        rss = memory_mb(pid, "VmHWM")
    print(f"{label:<26} wall {wall:6.2f} s   succeeded {ok:4d}/{n}   peak RSS {rss:6.1f} MB   "
          f"CPU: API {api_cpu:5.2f} s ({api_cpu / n * 1000:4.1f} ms per generation), "
          f"load generator {own_cpu:4.2f} s   {counts}")  # fmt: skip


# --- async (202) uploads through the work queue ---------------------------------------------


ACCEPT_GOAL_S = 2.0
ENQUEUE_GOAL_MS = 5.0
# WORK_MAX_ATTEMPTS, and how many times this process (playing Cloud Tasks) delivers one task.
MAX_ATTEMPTS = 10
# The queue's backoff between deliveries of one task (Cloud Tasks' default min_backoff, 0.1 s,
# doubling; infra/ configures 10 s, which would only stretch the wait here).
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 1.0
POLL_S = 0.2
FINISH_TIMEOUT_S = 180.0
UNFINISHED = frozenset({"pending", "processing"})


def queue_settings(work_queue: str, fake: Any = None) -> dict[str, str]:
    """The API's work-queue settings (field names); Cloud Tasks' point at the fake."""
    from tests.api.cloud_tasks_fake import QUEUE, TASKS_ACCOUNT

    if fake is None:
        return {"work_queue": work_queue}
    return {
        "work_queue": work_queue,
        "cloud_tasks_endpoint": fake.url,
        "cloud_tasks_queue": QUEUE,
        "work_service_account": TASKS_ACCOUNT,
        "oidc_certs_url": fake.certs_url,
        "work_max_attempts": str(MAX_ATTEMPTS),
    }


@dataclass
class AsyncRun:
    """One run of concurrent async uploads: how fast they were taken on and finished."""

    accept_s: float = 0.0
    answers: Counter[int] = field(default_factory=Counter)  # the uploads' status codes
    finish_s: float | None = None  # None: not all finished within FINISH_TIMEOUT_S
    final: Counter[str] = field(default_factory=Counter)  # the records, by status
    deliveries: Counter[int] = field(default_factory=Counter)  # Cloud Tasks: the API's answers
    dispatched: int = 0  # Cloud Tasks: tasks delivered (each until 2xx or attempts ran out)
    accept_cpu: float = 0.0  # the API's CPU seconds until the last upload was answered
    api_cpu: float = 0.0  # and until all had finished
    own_cpu: float = 0.0


class CloudTasksPlayer:
    """Plays Cloud Tasks: delivers each task the fake recorded to the API with its OIDC token, at
    most `limit` at once (max_concurrent_dispatches), and again after a backoff while the API
    answers non-2xx (503: not finished yet), up to MAX_ATTEMPTS times."""

    def __init__(self, fake: Any, limit: int) -> None:
        self._fake = fake
        self._slots = asyncio.Semaphore(limit)
        self._limit = limit
        self.expected: int | None = None  # how many tasks to wait for, once known
        self.deliveries: Counter[int] = Counter()

    async def run(self, deadline: float) -> int:
        """Dispatch tasks as they are created until `expected` were; how many were delivered."""
        seen: set[str] = set()
        scanned = 0
        running: list[asyncio.Task[None]] = []
        limits = httpx.Limits(max_connections=self._limit, max_keepalive_connections=self._limit)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            while (self.expected is None or len(seen) < self.expected) and (
                time.perf_counter() <= deadline
            ):
                created = self._fake.created[scanned:]  # a list the fake only appends to
                scanned += len(created)
                for body in created:
                    task = body["task"]
                    if task["name"] not in seen:
                        seen.add(task["name"])
                        running.append(asyncio.create_task(self._dispatch(client, task)))
                await asyncio.sleep(0.005)
            await asyncio.gather(*running)
        return len(running)

    async def _dispatch(self, client: httpx.AsyncClient, task: dict[str, Any]) -> None:
        for retry in range(MAX_ATTEMPTS):
            async with self._slots:
                try:
                    answer = await self._fake.deliver(client, task, retry_count=retry)
                    status = answer.status_code
                except httpx.HTTPError:
                    status = 0
            self.deliveries[status] += 1
            if 200 <= status < 300:
                return
            await asyncio.sleep(min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**retry))


async def record_statuses(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """The status of each of the user's generations, by id (GET /v1/generations, every page)."""
    statuses: dict[str, str] = {}
    cursor = None
    while True:
        params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/v1/generations", headers=headers, params=params)
        response.raise_for_status()
        page = response.json()
        statuses |= {item["id"]: item["status"] for item in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return statuses


async def async_uploads(
    api_url: str, pid: int, n: int, fake: Any = None, dispatch: int = 100
) -> AsyncRun:
    """n concurrent async uploads from one user; then wait until every accepted one finished:
    polled with the in-process queue, delivered by a CloudTasksPlayer with Cloud Tasks (it
    dispatches as tasks are created, as the queue would, while uploads still arrive)."""
    run = AsyncRun()
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        headers = await sign_up(client)
        host, port = api_url.removeprefix("http://").split(":")
        key = headers["Authorization"].removeprefix("Bearer ")
        request = multipart_request(host, key, small_selfie(), prefer="respond-async")
        api_cpu, own_cpu = cpu_seconds(pid), time.process_time()
        started = time.perf_counter()
        deadline = started + FINISH_TIMEOUT_S
        player = CloudTasksPlayer(fake, dispatch) if fake is not None else None
        playing = asyncio.create_task(player.run(deadline)) if player is not None else None
        answers = await asyncio.gather(*(exchange_raw(host, int(port), request) for _ in range(n)))
        run.accept_s = time.perf_counter() - started
        run.accept_cpu = cpu_seconds(pid) - api_cpu
        run.answers = Counter(status for status, _ in answers)
        ids = {json.loads(body)["id"] for status, body in answers if status == 202}
        if player is not None and playing is not None:
            player.expected = len(ids)
            run.dispatched = await playing
            run.deliveries = player.deliveries
        statuses = await record_statuses(client, headers)
        while (
            player is None
            and any(statuses.get(i) in UNFINISHED for i in ids)
            and time.perf_counter() <= deadline
        ):
            await asyncio.sleep(POLL_S)
            statuses = await record_statuses(client, headers)
        finished = time.perf_counter() - started
        run.api_cpu, run.own_cpu = cpu_seconds(pid) - api_cpu, time.process_time() - own_cpu
        run.final = Counter(statuses.get(i, "missing") for i in ids)
        if not any(status in UNFINISHED for status in run.final):
            run.finish_s = finished
    return run


FAKE_PROCESS = """
import time
from tests.api.cloud_tasks_fake import FakeGoogle
fake = FakeGoogle().start()
print(fake.url, flush=True)
time.sleep(3600)
"""


@contextmanager
def fake_in_own_process() -> Iterator[Any]:
    """A FakeGoogle in a process of its own, so its threads do not share this one's GIL: its
    url and certs_url."""
    command = [sys.executable, "-c", FAKE_PROCESS]
    with process(command, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        yield SimpleNamespace(url=url, certs_url=f"{url}/certs")


async def enqueue_cost(work_url: str, n: int, repeat: int) -> dict[str, list[float]]:
    """Each enqueue through CloudTasksQueue against the fake (in its own process): its latency
    (ms), n at once and then `repeat` one after another, and the CPU its call took in the
    client's thread (ms)."""
    from api.config import Settings
    from api.work import QueuedJob
    from api.work.cloud_tasks import CloudTasksQueue

    with fake_in_own_process() as fake:
        settings = Settings(**queue_settings("cloud_tasks", fake), work_url=work_url)  # type: ignore[arg-type]
        # No runner, deliverer or sessions: only enqueue() is called, never start()'s re-offer.
        queue = CloudTasksQueue(settings, None, None)  # type: ignore[arg-type]
        cpu: list[float] = []
        create = queue._create

        def timed_create(request: Any, job: Any) -> None:
            started = time.thread_time()
            create(request, job)
            cpu.append((time.thread_time() - started) * 1000)

        queue._create = timed_create  # type: ignore[method-assign]

        async def one() -> float:
            started = time.perf_counter()
            await queue.enqueue(QueuedJob("generation", uuid.uuid4()))
            return (time.perf_counter() - started) * 1000

        try:
            for _ in range(3):  # warm the client's connections
                await one()
            cpu.clear()
            concurrent = await asyncio.gather(*(one() for _ in range(n)))
            sequential = [await one() for _ in range(repeat)]
        finally:
            await queue.aclose()
    return {"concurrent": list(concurrent), "sequential": sequential, "cpu": cpu}


def run_async_uploads(
    database_url: str, function_url: str, n: int, dispatch: int, repeat: int
) -> None:
    from tests.api.cloud_tasks_fake import FakeGoogle

    fake = FakeGoogle().start()
    try:
        for work_queue, queue_fake in (("inprocess", None), ("cloud_tasks", fake)):
            env = {k.upper(): v for k, v in queue_settings(work_queue, queue_fake).items()}
            with api_server(database_url, function_url, "api.main:create_app", env) as (url, pid):
                run = asyncio.run(async_uploads(url, pid, n, queue_fake, dispatch))
                rss = memory_mb(pid, "VmHWM")
            report_async_run(work_queue, run, n, rss)
    finally:
        fake.stop()
    report_enqueue_cost(asyncio.run(enqueue_cost("http://127.0.0.1:9", n, repeat)))


def report_async_run(work_queue: str, run: AsyncRun, n: int, rss: float) -> None:
    accepted = run.answers.get(202, 0)
    verdict = "met" if accepted == n and run.accept_s <= ACCEPT_GOAL_S else "MISSED"
    finished = f"{run.finish_s:6.2f} s" if run.finish_s is not None else "  NOT ALL"
    print(f"  {work_queue:<12} accepted {accepted:4d}/{n} in {run.accept_s:5.2f} s "
          f"(goal <= {ACCEPT_GOAL_S:g} s: {verdict})   all finished in {finished}: "
          f"{dict(run.final)}   answers {dict(run.answers)}")  # fmt: skip
    if run.dispatched:
        print(f"  {'':<12} Cloud Tasks played: {run.dispatched} tasks delivered, "
              f"the API answered {dict(run.deliveries)}")  # fmt: skip
    print(f"  {'':<12} peak RSS {rss:6.1f} MB   CPU: API {run.accept_cpu:5.2f} s until all "
          f"accepted ({run.accept_cpu / n * 1000:4.1f} ms per upload), {run.api_cpu:5.2f} s in all "
          f"({run.api_cpu / n * 1000:4.1f} ms per generation), load generator "
          f"{run.own_cpu:4.2f} s")  # fmt: skip


def report_enqueue_cost(cost: dict[str, list[float]]) -> None:
    cpu = cost["cpu"]
    print(f"  cloud_tasks enqueue (the fake in its own process): the client's CPU per call "
          f"median {statistics.median(cpu):4.2f} ms; latency:")  # fmt: skip
    for label, key in (("at once", "concurrent"), ("one at a time", "sequential")):
        times = cost[key]
        median, p95 = statistics.median(times), statistics.quantiles(times, n=20)[18]
        verdict = "met" if median <= ENQUEUE_GOAL_MS else "MISSED"
        goal = f"goal <= {ENQUEUE_GOAL_MS:g} ms median: {verdict}"
        print(f"  cloud_tasks enqueue, {len(times)} {label:<14} median {median:6.1f} ms   "
              f"p95 {p95:6.1f} ms   ({goal})")  # fmt: skip


# --- the cost of observability: metrics and JSON logs on vs off ------------------------------


OBSERVABILITY_GOAL = 1.05  # the API's CPU per generation with metrics and JSON logs / without
# As api/observability/logs.py has uvicorn started: the config's root level is INFO (the API's
# access lines on), and uvicorn's own access logger has no handler (the API writes its own).
JSON_LOGS = ("--log-config", "api/observability/logging.json")
SETTLE_S = 0.3  # after a burst: a request's access line is written after its answer was sent
ADMIN_KEY = os.environ.get("ADMIN_API_KEY", "dev-only-admin-key")


@dataclass
class Observed:
    """One of the two API servers compared: its bursts' cost, and the log lines it wrote."""

    label: str
    url: str = ""
    pid: int = 0
    target: tuple[str, int, bytes] = ("", 0, b"")  # host, port, a prepared generation
    log: Path | None = None  # where its stdout goes (the "on" server's JSON lines)
    cpu_ms: list[float] = field(default_factory=list)  # per generation, one per round
    succeeded: int = 0  # 201s in all, the warm-up burst's included
    log_lines: Counter[str] = field(default_factory=Counter)  # in the measured bursts, by logger
    log_bytes: int = 0


def log_lines_by_logger(text: bytes) -> Counter[str]:
    """The lines of a JSON log, counted by their `logger` ("not JSON" for any other line)."""
    lines: Counter[str] = Counter()
    for line in text.splitlines():
        try:
            lines[str(json.loads(line).get("logger"))] += 1
        except (ValueError, AttributeError):
            lines["not JSON"] += 1
    return lines


def observed_burst(server: Observed, n: int) -> tuple[float, Counter[int], float, bytes]:
    """One burst of n sync generations: wall seconds, status counts, the API's CPU seconds
    and what it wrote to its log meanwhile."""
    logged = server.log.stat().st_size if server.log is not None else 0
    cpu = cpu_seconds(server.pid)
    wall, counts = asyncio.run(send_all(*server.target, n))
    time.sleep(SETTLE_S)
    cpu = cpu_seconds(server.pid) - cpu
    written = b""
    if server.log is not None:
        with server.log.open("rb") as log:  # its own offset: the server's stdout keeps its one
            log.seek(logged)
            written = log.read()
    server.succeeded += counts.get(201, 0)
    return wall, counts, cpu, written


def scrape(url: str) -> tuple[int, list[str]]:
    """GET /metrics with the admin key: the status and the samples (lines but comments)."""
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    lines = response.text.splitlines() if response.status_code == 200 else []
    return response.status_code, [line for line in lines if line and not line.startswith("#")]


def run_observability(database_url: str, function_url: str, n: int, rounds: int) -> None:
    """Two API servers up at once, metrics and JSON logs off and on; a warm-up burst each, then
    `rounds` rounds of a measured burst on each, alternating which goes first."""
    off, on = Observed("off"), Observed("on")
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp, ExitStack() as servers:
        on.log = Path(tmp) / "api.log"
        stdout = servers.enter_context(on.log.open("wb"))  # a file: no pipe to fill and block
        settings = (
            (off, {"METRICS_ENABLED": "false"}, QUIET_LOGS, None),
            (on, {"METRICS_ENABLED": "true", "LOG_FORMAT": "json"}, JSON_LOGS, stdout),
        )
        for server, env, log_args, output in settings:
            try:
                server.url, server.pid = servers.enter_context(
                    api_server(database_url, function_url, "api.main:create_app", env, log_args,
                               output)
                )  # fmt: skip
            except SystemExit:
                if server.log is not None:
                    sys.stderr.write(server.log.read_text(errors="replace")[-4000:])
                raise
            server.target = asyncio.run(prepared_generation(server.url))
            observed_burst(server, n)  # warm-up: connections, caches, lazy imports
        for round_ in range(1, rounds + 1):
            # Off first in odd rounds, on first in even ones: neither always follows the other.
            for server in (off, on) if round_ % 2 else (on, off):
                wall, counts, cpu, written = observed_burst(server, n)
                server.cpu_ms.append(cpu / n * 1000)
                lines = log_lines_by_logger(written)
                server.log_lines += lines
                server.log_bytes += len(written)
                failed = "" if counts.get(201, 0) == n else f"   NOT ALL: {dict(counts)}"
                logged = (
                    f"   log lines {lines.total() / n:4.2f} per generation "
                    f"({len(written) / n:4.0f} B)"
                    if server is on
                    else ""
                )
                print(f"  round {round_:<3} {server.label:<4} wall {wall:5.2f} s   succeeded "
                      f"{counts.get(201, 0):4d}/{n}   API CPU {cpu:5.2f} s "
                      f"({server.cpu_ms[-1]:5.2f} ms per generation){logged}{failed}")  # fmt: skip
        on_status, samples = scrape(on.url)
        off_status, _ = scrape(off.url)
    report_observability(off, on, n * rounds, on_status, samples, off_status)


def report_observability(off: Observed, on: Observed, measured: int, on_status: int,
                         samples: list[str], off_status: int) -> None:  # fmt: skip
    off_ms, on_ms = statistics.median(off.cpu_ms), statistics.median(on.cpu_ms)
    ratio = on_ms / off_ms
    verdict = "met" if ratio <= OBSERVABILITY_GOAL else "MISSED"
    per_round = sorted(b / a for a, b in zip(off.cpu_ms, on.cpu_ms, strict=True))
    print(f"  {'median':<9} off  {off_ms:5.2f} ms   on {on_ms:5.2f} ms per generation:   on/off "
          f"{ratio:4.2f} (goal <= {OBSERVABILITY_GOAL:g}: {verdict}); each round's on/off "
          f"{per_round[0]:4.2f}-{per_round[-1]:4.2f}, median "
          f"{statistics.median(per_round):4.2f}")  # fmt: skip
    by_logger = ", ".join(f"{name} {count / measured:4.2f}" for name, count in
                          on.log_lines.most_common())  # fmt: skip
    print(f"  on:  log lines per generation {on.log_lines.total() / measured:4.2f} "
          f"({on.log_bytes / measured:4.0f} B): {by_logger or 'none'}")  # fmt: skip
    generations = [line for line in samples if line.startswith("avatar_generations_total")]
    counted = "; ".join(generations) or "no avatar_generations_total"
    print(f"  on:  GET /metrics {on_status}, {len(samples)} samples; {on.succeeded} generations "
          f"succeeded on this server: {counted}")  # fmt: skip
    print(f"  off: GET /metrics {off_status}")


SECTIONS = ("sync", "async", "overhead", "observability")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--delay", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--async-delay", type=float, help="the stub's delay for async uploads "
                        "(default: --delay)")  # fmt: skip
    parser.add_argument("--dispatch", type=int, default=100,
                        help="the Cloud Tasks queue's max_concurrent_dispatches")  # fmt: skip
    parser.add_argument("--observability-n", type=int, default=300,
                        help="generations per burst in the observability section")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3,
                        help="off/on rounds in the observability section")  # fmt: skip
    parser.add_argument("--only", action="append", choices=SECTIONS,
                        help="run only this section (repeatable; default: all)")  # fmt: skip
    parser.add_argument("--stub", nargs=2, metavar=("PORT", "DELAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        asyncio.run(run_stub(int(args.stub[0]), float(args.stub[1])))
        return
    sections = set(args.only or SECTIONS)
    me = str(Path(__file__).resolve())
    async_delay = args.delay if args.async_delay is None else args.async_delay
    ports = {delay: free_port() for delay in {args.delay, 0.0, async_delay}}  # a stub per delay
    stub_url = {delay: f"http://127.0.0.1:{port}/" for delay, port in ports.items()}
    with database(args.sqlite) as database_url, ExitStack() as stubs:
        for delay, port in ports.items():
            stubs.enter_context(process([sys.executable, me, "--stub", str(port), str(delay)]))
        slow_url, fast_url = stub_url[args.delay], stub_url[0.0]
        db = "SQLite" if args.sqlite else "PostgreSQL"
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        burst_setup = f" stub answers after {args.delay:g} s;" if "sync" in sections else ""
        at_once = f" {args.n} at once;" if "sync" in sections else ""
        print(f"{db};{burst_setup} one uvicorn worker;{at_once} load average {load} on "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        if "sync" in sections:
            run_burst("shared pooled client", database_url, slow_url, "api.main:create_app",
                      args.n)  # fmt: skip
            run_burst("baseline: client/request", database_url, slow_url,
                      "concurrency:baseline_app", args.n)  # fmt: skip
        if "async" in sections:
            print(f"\n{args.n} concurrent async (202) uploads, one user; stub answers after "
                  f"{async_delay:g} s; Cloud Tasks played by the bench, at most {args.dispatch} "
                  f"dispatches at once:")  # fmt: skip
            run_async_uploads(database_url, stub_url[async_delay], args.n, args.dispatch,
                              args.repeat)  # fmt: skip
        if "observability" in sections:
            print(f"\nMetrics and JSON logs off vs on: the API's CPU per sync generation, "
                  f"{args.observability_n} at once from one user, the stub answering at once; "
                  f"both servers up throughout, each warmed by one burst, then off and on in "
                  f"turn (alternating which goes first), {args.rounds} times:")  # fmt: skip
            run_observability(database_url, fast_url, args.observability_n, args.rounds)
        if "overhead" in sections:
            with api_server(database_url, fast_url, "api.main:create_app") as (api_url, _):
                result = asyncio.run(overhead(api_url, fast_url, args.repeat))
            report_overhead(result, args.repeat)


def report_overhead(result: dict[str, float], repeat: int) -> None:
    extra = result["via_api"] - result["direct"]
    small_extra = result["small_via_api"] - result["small_direct"]
    rows = [
        ("3 MB: straight to the stub", result["direct"], ""),
        ("3 MB: through the API (sync)", result["via_api"], ""),
        ("3 MB: API overhead", extra, f"ratio {result['via_api'] / result['direct']:.1f}x"),
        ("  preparing it (in-process)", result["prepare"], "header checks, lossless strip"),
        ("  baseline: the old normalising", result["decode"], "decode, downscale, re-encode"),
        ("5 kB: straight to the stub", result["small_direct"], ""),
        ("5 kB: through the API (sync)", result["small_via_api"], ""),
        ("5 kB: API overhead", small_extra, "auth, limits, DB writes, forwarding"),
    ]
    print(
        f"\n{result['bytes'] / 1e6:.1f} MB 4032x3024 JPEG and a 640x480 one, medians of {repeat}:"
    )
    for label, value, note in rows:
        print(f"  {label:<32} {value:7.1f} ms  {note}")


if __name__ == "__main__":
    main()

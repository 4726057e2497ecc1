"""Completion webhooks: --n completions delivered to a local receiver, how fast, at what CPU.

Starts three processes beside this one: the stub function (bench/concurrency.py's, answering at
once, or after --delay seconds), a webhook receiver (a small asyncio HTTP server: it answers 204
at once, notes each request's arrival time, and then checks its signature with
standardwebhooks), and the API under uvicorn (one worker, ENVIRONMENT=development so an http://
loopback URL is allowed, WORK_QUEUE=inprocess, PostgreSQL in a migrated schema of its own, or
SQLite with --sqlite).

Two users: one without a webhook, one whose webhook points at the receiver. Each round runs
--n sync POST /v1/generations (a 640x480 JPEG, --concurrency in flight) first for the user
without a webhook, then for the one with it, and reads the API process's CPU time
(/proc/PID/stat) around each run, until the process is idle again (the last deliveries
recorded). Reported:

- latency: the receiver's arrival time minus the event body's `timestamp` (the generation's
  completed_at), median, p90, p99 and max over every round's deliveries; goal <= 50 ms median.
  Split, from the API's delivery log, into completion -> attempt start (the commit, the queue,
  the claim) and attempt start -> receipt (secrets, signing, connecting, posting).
- the API's CPU per delivery: (CPU with the webhook - CPU without) / --n, and the ratio.
- whether every delivery arrived once with a valid signature, and what the API's delivery log
  (GET /v1/users/me/webhook/deliveries) says of them: none lost.

The schema is dropped and the processes stopped at the end.

    .venv/bin/python bench/webhooks.py [--n 1000] [--concurrency 20] [--rounds 2] [--sqlite]
        [--delay 0] [--warmup 20] [--timeout 60]

With the stub answering at once, 20 in flight keep the API's one process busy all the time:
a delivery then waits its turn in the event loop behind the generations (as their answers do;
each run's line shows their median). --delay (or a lower --concurrency) measures a lighter
load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from benchproc import free_port, memory_mb, wait_up
from concurrency import (
    api_server,
    cpu_seconds,
    database,
    exchange_raw,
    multipart_request,
    process,
    sign_up,
    small_selfie,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
GOAL_MEDIAN_MS = 50.0
# The API's CPU is read once it has been idle this long (no clock tick) after a run.
QUIET_S = 0.25
LOG_PAGE = 100  # the delivery log's largest page


# --- the receiver (runs in its own process: `webhooks.py --receive PORT`) --------------------


NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


@dataclass
class Inbox:
    """What the receiver got: one record per webhook request, and signature checks."""

    verifier: Any = None  # a standardwebhooks.Webhook once POST /secret named the secret
    records: list[dict[str, Any]] = field(default_factory=list)

    def record(self, at: float, headers: dict[str, str], body: bytes) -> None:
        """Note a request (after it was answered: the check is not in the API's way)."""
        from standardwebhooks.webhooks import WebhookVerificationError

        event = json.loads(body)
        valid = None
        if self.verifier is not None:
            try:
                self.verifier.verify(body, headers)
                valid = True
            except WebhookVerificationError:
                valid = False
        self.records.append(
            {
                "at": at,
                "timestamp": event["timestamp"],
                "id": event["data"]["id"],
                "type": event["type"],
                "webhook_id": headers.get("webhook-id"),
                "valid": valid,
            }
        )

    def answer(self, target: str) -> bytes:
        """GET /count: how many requests arrived; GET /results: all the records."""
        if target == "/results":
            payload: Any = {"records": self.records}
        else:
            payload = {"count": len(self.records)}
        body = json.dumps(payload).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )


async def receive_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, inbox: Inbox
) -> None:
    """Serve one connection: webhook POSTs (204), POST /secret, GET /count and /results."""
    from standardwebhooks import Webhook

    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {}
            for line in lines:
                name, colon, value = line.partition(":")
                if colon:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            arrived = time.time()  # the clock the API's completed_at is read from, too
            if method == "GET":
                writer.write(inbox.answer(target))
            elif target == "/secret":
                inbox.verifier = Webhook(body.decode())
                writer.write(NO_CONTENT)
            else:
                writer.write(NO_CONTENT)
                await writer.drain()
                inbox.record(arrived, headers, body)
                continue
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def run_receiver(port: int) -> None:
    inbox = Inbox()
    server = await asyncio.start_server(
        lambda r, w: receive_connection(r, w, inbox), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


# --- orchestration --------------------------------------------------------------------------


def wait_listening(port: int, timeout_s: float = 30) -> None:
    """Return once something accepts connections on the loopback port (the stub speaks only
    POST, so benchproc.wait_up's GET would not do)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


@dataclass
class User:
    """A user of the bench, and one POST /v1/generations of theirs as bytes (sent many times)."""

    headers: dict[str, str]
    request: bytes


@dataclass
class Run:
    """One run of --n generations for one user."""

    hooked: bool
    wall_s: float = 0.0
    api_cpu_s: float = 0.0
    answers: Counter[int] = field(default_factory=Counter)
    answer_ms: list[float] = field(default_factory=list)  # each POST's time until its answer
    ids: list[str] = field(default_factory=list)  # the generations that succeeded
    received: int = 0  # requests the receiver got during the run (hooked runs)
    receipt_s: float | None = None  # from the run's start until the last arrived (None: not all)
    receiver_cpu_s: float = 0.0


@dataclass
class Results:
    runs: list[Run]
    records: list[dict[str, Any]]  # the receiver's
    log: list[dict[str, Any]]  # the API's delivery log of the hooked user
    warmup_ids: list[str]
    rss_mb: float


class Bench:
    """The API, the receiver and the two users; runs of generations against them."""

    def __init__(self, api_url: str, api_pid: int, receiver_url: str, receiver_pid: int) -> None:
        self.api_url, self.api_pid = api_url, api_pid
        self.receiver_url, self.receiver_pid = receiver_url, receiver_pid
        host, port = api_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)

    async def user(self, client: httpx.AsyncClient, image: bytes, hooked: bool) -> User:
        """A new user; with `hooked`, its webhook set to the receiver, which learns the secret."""
        headers = await sign_up(client)
        if hooked:
            response = await client.put(
                "/v1/users/me/webhook", json={"url": f"{self.receiver_url}/hooks"}, headers=headers
            )
            response.raise_for_status()
            secret = response.json()["secret"]
            (await client.post(f"{self.receiver_url}/secret", content=secret)).raise_for_status()
        key = headers["Authorization"].removeprefix("Bearer ")
        return User(headers, multipart_request(self.host, key, image))

    async def generations(
        self, user: User, n: int, concurrency: int
    ) -> list[tuple[int, bytes, float]]:
        """n sync generations, `concurrency` in flight, each on a new connection: the answers
        (status, body, milliseconds until the answer).

        Sent as prepared bytes on raw sockets (as bench/concurrency.py does): an httpx client
        would take much of a core from the two this machine has."""
        slots = asyncio.Semaphore(concurrency)

        async def one() -> tuple[int, bytes, float]:
            async with slots:
                started = time.perf_counter()
                status, body = await exchange_raw(self.host, self.port, user.request)
                return status, body, (time.perf_counter() - started) * 1000

        return await asyncio.gather(*(one() for _ in range(n)))

    async def received(self, client: httpx.AsyncClient) -> int:
        response = await client.get(f"{self.receiver_url}/count")
        return int(response.json()["count"])

    async def wait_received(
        self, client: httpx.AsyncClient, count: int, started: float, timeout_s: float
    ) -> float | None:
        """Seconds from `started` until the receiver had `count` requests (polled every 20 ms);
        None if it had not within `timeout_s` from now."""
        deadline = time.perf_counter() + timeout_s
        while await self.received(client) < count:
            if time.perf_counter() > deadline:
                return None
            await asyncio.sleep(0.02)
        return time.perf_counter() - started

    async def quiet(self) -> None:
        """Wait until the API process has used no CPU for QUIET_S (at most 10 s): the work
        a run started (deliveries recorded after the receiver's answer) is done."""
        deadline = time.monotonic() + 10
        before = cpu_seconds(self.api_pid)
        while time.monotonic() < deadline:
            await asyncio.sleep(QUIET_S)
            now = cpu_seconds(self.api_pid)
            if now == before:
                return
            before = now

    async def run(
        self, client: httpx.AsyncClient, user: User, hooked: bool, n: int, concurrency: int,
        timeout_s: float,
    ) -> Run:  # fmt: skip
        """n generations for `user`; for a hooked one, until the receiver got all their events."""
        run = Run(hooked)
        already = await self.received(client)
        receiver_cpu = cpu_seconds(self.receiver_pid)
        await self.quiet()
        api_cpu, started = cpu_seconds(self.api_pid), time.perf_counter()
        answers = await self.generations(user, n, concurrency)
        run.wall_s = time.perf_counter() - started
        run.answers = Counter(status for status, _, _ in answers)
        run.answer_ms = [ms for _, _, ms in answers]
        run.ids = [json.loads(body)["id"] for status, body, _ in answers if status == 201]
        if hooked:
            expected = already + len(run.ids)
            run.receipt_s = await self.wait_received(client, expected, started, timeout_s)
        await self.quiet()
        run.api_cpu_s = cpu_seconds(self.api_pid) - api_cpu
        run.received = await self.received(client) - already
        run.receiver_cpu_s = cpu_seconds(self.receiver_pid) - receiver_cpu
        return run

    async def delivery_log(self, client: httpx.AsyncClient, user: User) -> list[dict[str, Any]]:
        """Every delivery of the user's webhook, every page of the log."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": str(LOG_PAGE)} | ({"cursor": cursor} if cursor else {})
            response = await client.get(
                "/v1/users/me/webhook/deliveries", headers=user.headers, params=params
            )
            response.raise_for_status()
            page = response.json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return items


async def measure(bench: Bench, args: argparse.Namespace) -> Results:
    """Warm both users up, then --rounds rounds: without the webhook, then with it."""
    image = small_selfie()
    async with httpx.AsyncClient(base_url=bench.api_url, timeout=60) as client:
        plain = await bench.user(client, image, hooked=False)
        hooked = await bench.user(client, image, hooked=True)
        # Warm-up: connections, caches, and the first delivery's imports and key derivation.
        warmup: list[str] = []
        for user, is_hooked in ((plain, False), (hooked, True)):
            run = await bench.run(client, user, is_hooked, args.warmup, args.concurrency,
                                  args.timeout)  # fmt: skip
            warmup += run.ids if is_hooked else []
        runs = []
        for _ in range(args.rounds):
            for user, is_hooked in ((plain, False), (hooked, True)):
                runs.append(await bench.run(client, user, is_hooked, args.n, args.concurrency,
                                            args.timeout))  # fmt: skip
        results = await client.get(f"{bench.receiver_url}/results")
        log = await bench.delivery_log(client, hooked)
    return Results(runs, results.json()["records"], log, warmup, memory_mb(bench.api_pid, "VmHWM"))


# --- report ---------------------------------------------------------------------------------


def percentiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return (
        f"median {statistics.median(values):6.1f} ms   p90 {cuts[89]:6.1f} ms   "
        f"p99 {cuts[98]:6.1f} ms   max {max(values):6.1f} ms"
    )


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def report(results: Results, n: int) -> None:
    by_id = {record["id"]: record for record in results.records}
    latency: dict[str, float] = {  # ms, by generation id
        gid: (record["at"] - epoch(record["timestamp"])) * 1000 for gid, record in by_id.items()
    }
    plain_runs = [run for run in results.runs if not run.hooked]
    hooked_runs = [run for run in results.runs if run.hooked]
    for number, (plain, hooked) in enumerate(zip(plain_runs, hooked_runs, strict=True), 1):
        for run in (plain, hooked):
            label = "with webhook:   " if run.hooked else "without webhook:"
            line = (
                f"round {number} {label} {len(run.ids):4d}/{n} succeeded in {run.wall_s:5.2f} s;"
                f" answered in {statistics.median(run.answer_ms):5.1f} ms (median); API CPU"
                f" {run.api_cpu_s:5.2f} s ({run.api_cpu_s / n * 1000:4.1f} ms per generation)"
            )
            if run.hooked:
                mine = [latency[gid] for gid in run.ids if gid in latency]
                arrived = f"{run.receipt_s:5.2f} s" if run.receipt_s is not None else "NOT ALL"
                line += f"; {run.received} received, all by {arrived} from the start"
                if len(mine) >= 2:  # what statistics.quantiles needs
                    tail = statistics.quantiles(mine, n=100, method="inclusive")[98]
                    line += f"; median {statistics.median(mine):5.1f} ms, p99 {tail:5.1f} ms"
                line += (
                    f"; receiver CPU {run.receiver_cpu_s / max(run.received, 1) * 1000:4.2f} ms"
                    " per request"
                )
            if set(run.answers) != {201}:
                line += f"   answers {dict(run.answers)}"
            print(line)

    measured = [gid for run in hooked_runs for gid in run.ids]
    values = [latency[gid] for gid in measured if gid in latency]
    if len(values) >= 2:
        median = statistics.median(values)
        verdict = "met" if median <= GOAL_MEDIAN_MS else "MISSED"
        print(f"\ncompletion -> receipt, {len(values)} deliveries: {percentiles(values)}"
              f"   (goal <= {GOAL_MEDIAN_MS:g} ms median: {verdict})")  # fmt: skip
    report_split(results, by_id, set(measured))

    per_delivery = [
        (hooked.api_cpu_s - plain.api_cpu_s) / n * 1000
        for plain, hooked in zip(plain_runs, hooked_runs, strict=True)
    ]
    ratios = [
        hooked.api_cpu_s / plain.api_cpu_s
        for plain, hooked in zip(plain_runs, hooked_runs, strict=True)
    ]
    rounds = ", ".join(f"{x:.2f}" for x in per_delivery)
    ratio_rounds = ", ".join(f"{x:.2f}x" for x in ratios)
    print(f"API CPU per delivery: {statistics.median(per_delivery):.2f} ms (rounds: {rounds});"
          f" CPU with/without webhook {statistics.median(ratios):.2f}x"
          f" (rounds: {ratio_rounds})")  # fmt: skip

    report_integrity(results, measured)
    print(f"API peak RSS {results.rss_mb:.1f} MB")


def report_split(results: Results, by_id: dict[str, dict[str, Any]], measured: set[str]) -> None:
    """Latency in two parts, from the API's log: until the attempt started, and from there."""
    waited, sent = [], []
    for item in results.log:
        record = by_id.get(str(item["generation_id"]))
        if record is None or record["id"] not in measured or not item["attempt_log"]:
            continue
        started = epoch(item["attempt_log"][0]["started_at"])
        waited.append((started - epoch(record["timestamp"])) * 1000)
        sent.append((record["at"] - started) * 1000)
    if len(waited) >= 2:
        print(f"  completion -> attempt start:     {percentiles(waited)}")
        print(f"  attempt start -> receipt:        {percentiles(sent)}")


def report_integrity(results: Results, measured: list[str]) -> None:
    """Did every event arrive once, signed, and does the API's log say delivered?"""
    records = results.records
    ids = Counter(record["id"] for record in records)
    valid = Counter(record["valid"] for record in records)
    expected = set(measured) | set(results.warmup_ids)
    missing = expected - set(ids)
    print(f"receiver: {len(records)} requests for {len(ids)} generations "
          f"({len(expected)} expected, warm-up included; {len(missing)} missing, "
          f"{sum(c - 1 for c in ids.values())} repeated); signatures: {valid[True]} valid, "
          f"{valid[False]} invalid, {valid[None]} unchecked")  # fmt: skip
    statuses = Counter(item["status"] for item in results.log)
    attempts = Counter(item["attempts"] for item in results.log)
    events = Counter(item["event"] for item in results.log)
    # The webhook-id header each request carried is its delivery's id in the log.
    header_ids = {record["id"]: record["webhook_id"] for record in records}
    matched = sum(header_ids.get(str(item["generation_id"])) == item["id"] for item in results.log)
    print(f"delivery log (GET /v1/users/me/webhook/deliveries): {len(results.log)} deliveries "
          f"{dict(statuses)}; events {dict(events)}; attempts per delivery {dict(attempts)}; "
          f"webhook-id as received: {matched}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="generations per run")
    parser.add_argument("--concurrency", type=int, default=20, help="generations in flight")
    parser.add_argument("--delay", type=float, default=0.0, help="the stub's answer delay (s)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of a run without the webhook, then one with it")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=20, help="generations per user first")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="how long deliveries may lag a run's last answer (s)")  # fmt: skip
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--receive", metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        asyncio.run(run_receiver(int(args.receive)))
        return
    stub_port, receiver_port = free_port(), free_port()
    stub = [sys.executable, str(REPO_ROOT / "bench" / "concurrency.py"), "--stub",
            str(stub_port), str(args.delay)]  # fmt: skip
    receiver = [sys.executable, str(Path(__file__).resolve()), "--receive", str(receiver_port)]
    queue_env = {"ENVIRONMENT": "development", "WORK_QUEUE": "inprocess"}
    with (
        database(args.sqlite, "bench_webhooks") as database_url,
        process(stub),
        process(receiver) as receiver_process,
    ):
        wait_listening(stub_port)
        receiver_url = f"http://127.0.0.1:{receiver_port}"
        wait_up(f"{receiver_url}/count", receiver_process)
        db = "SQLite" if args.sqlite else "PostgreSQL"
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        stub_delay = f"after {args.delay:g} s" if args.delay else "at once"
        print(f"{db}; one uvicorn worker, WORK_QUEUE=inprocess; the stub answers {stub_delay}; "
              f"{args.n} sync generations a run, {args.concurrency} in flight; receiver in its "
              f"own process; load average {load} on {os.cpu_count()} CPUs")  # fmt: skip
        stub_url = f"http://127.0.0.1:{stub_port}/"
        with api_server(database_url, stub_url, "api.main:create_app", queue_env) as (url, pid):
            bench = Bench(url, pid, receiver_url, receiver_process.pid)
            results = asyncio.run(measure(bench, args))
    report(results, args.n)


if __name__ == "__main__":
    main()

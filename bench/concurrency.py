"""500 concurrent generations through one API process, and the API's own per-request overhead.

Starts a stub function (another process: a small asyncio HTTP server that answers like the real
function after --delay seconds) and the API under uvicorn (one worker, PostgreSQL in a schema of
its own, or SQLite with --sqlite). Then:

1. --n concurrent POST /v1/generations (sync) from one user: wall time, successes, the API
   process's peak RSS (VmHWM) — with the shared pooled client, and with a baseline forwarder that
   builds a new httpx client per request (no pooled connections), in the same run.
2. Overhead: a 3 MB phone photo POSTed to the API vs straight to the stub (answering at once);
   medians of --repeat sequential requests; also the time the API spends preparing it (the thin
   path: header checks and a lossless metadata strip) against the old decode/downscale/re-encode
   (bench/strip.py's baseline), in this process.

    .venv/bin/python bench/concurrency.py [--n 500] [--delay 5] [--repeat 30] [--sqlite]
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from benchproc import free_port, wait_up

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
    command: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env or dict(os.environ))
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
def database(use_sqlite: bool) -> Iterator[str]:
    """A migrated database of the bench's own: a PostgreSQL schema (dropped after) or a file."""
    from benchdb import migrate, private_schema

    if use_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            migrate(url)
            yield url
        return
    base = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    with private_schema(base, "bench_concurrency") as url:
        yield url


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process: its peak resident set size."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]


@contextmanager
def api_server(database_url: str, function_url: str, factory: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = dict(os.environ) | {
        "DATABASE_URL": database_url,
        "FUNCTION_URL": function_url,
        "RATE_LIMIT_GENERATIONS": "1000000",
        "STORAGE_DIR": tempfile.mkdtemp(prefix="bench-media-"),
        "PYTHONPATH": f"{REPO_ROOT / 'bench'}:{REPO_ROOT}",
    }
    command = [str(BIN / "uvicorn"), factory, "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--log-level", "warning",
               "--no-access-log", "--backlog", "4096"]  # fmt: skip
    with process(command, env) as proc:
        wait_up(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}", proc.pid


def small_selfie() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (640, 480), (180, 140, 120)).save(out, "JPEG", quality=85)
    return out.getvalue()


def phone_photo_3mb() -> bytes:
    """A 4032x3024 JPEG of about 3 MB (a real photo, upscaled, with sensor-like noise)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((4032, 3024))
    noise = np.random.default_rng(0).integers(-12, 12, (3024, 4032, 3))
    pixels = (np.asarray(base).astype(np.int16) + noise).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


async def sign_up(client: httpx.AsyncClient) -> dict[str, str]:
    name = f"bench{uuid.uuid4().hex[:10]}"
    response = await client.post("/v1/users", json={"username": name, "email": f"{name}@b.test"})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['api_key']}"}


def multipart_request(host: str, key: str, image: bytes) -> bytes:
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
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def send_raw(host: str, port: int, request: bytes) -> int:
    """Send prepared bytes on a new connection; the answer's status code (0 if none)."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
        writer.close()
    except OSError:
        return 0
    match = re.match(rb"HTTP/1\.1 (\d{3})", answer)
    return int(match[1]) if match else 0


async def burst(api_url: str, n: int) -> tuple[float, int, dict[int, int]]:
    """n concurrent sync generations from one user: (wall seconds, successes, status counts).

    The load is sent as prepared bytes on raw sockets: an httpx client doing 500 multipart
    requests would take a core of its own from the two this machine has.
    """
    async with httpx.AsyncClient(base_url=api_url) as client:
        key = (await sign_up(client))["Authorization"].removeprefix("Bearer ")
    host, port = api_url.removeprefix("http://").split(":")
    request = multipart_request(host, key, small_selfie())
    started = time.perf_counter()
    statuses = await asyncio.gather(*(send_raw(host, int(port), request) for _ in range(n)))
    wall = time.perf_counter() - started
    counts: dict[int, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return wall, counts.get(201, 0), counts


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
    from strip import baseline, thin

    photo, small = phone_photo_3mb(), small_selfie()
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
    prepare_ms = statistics.median(timed(lambda: thin(photo), repeat))
    decode_ms = statistics.median(timed(lambda: baseline(photo), repeat))
    return result | {"bytes": len(photo), "prepare": prepare_ms, "decode": decode_ms}


def timed(call: Any, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_burst(label: str, database_url: str, function_url: str, factory: str, n: int) -> None:
    with api_server(database_url, function_url, factory) as (api_url, pid):
        api_cpu, own_cpu = cpu_seconds(pid), time.process_time()
        wall, ok, counts = asyncio.run(burst(api_url, n))
        api_cpu, own_cpu = cpu_seconds(pid) - api_cpu, time.process_time() - own_cpu
        rss = peak_rss_mb(pid)
    print(f"{label:<26} wall {wall:6.2f} s   succeeded {ok:4d}/{n}   peak RSS {rss:6.1f} MB   "
          f"CPU: API {api_cpu:5.2f} s ({api_cpu / n * 1000:4.1f} ms per generation), "
          f"load generator {own_cpu:4.2f} s   {counts}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--delay", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--stub", nargs=2, metavar=("PORT", "DELAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        asyncio.run(run_stub(int(args.stub[0]), float(args.stub[1])))
        return
    me = str(Path(__file__).resolve())
    slow_port, fast_port = free_port(), free_port()
    with (
        database(args.sqlite) as database_url,
        process([sys.executable, me, "--stub", str(slow_port), str(args.delay)]),
        process([sys.executable, me, "--stub", str(fast_port), "0"]),
    ):
        slow_url, fast_url = f"http://127.0.0.1:{slow_port}/", f"http://127.0.0.1:{fast_port}/"
        db = "SQLite" if args.sqlite else "PostgreSQL"
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{db}; stub answers after {args.delay:g} s; one uvicorn worker; {args.n} at once;"
              f" load average {load} on {os.cpu_count()} CPUs")  # fmt: skip
        run_burst("shared pooled client", database_url, slow_url, "api.main:create_app", args.n)
        run_burst("baseline: client/request", database_url, slow_url, "concurrency:baseline_app",
                  args.n)  # fmt: skip
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

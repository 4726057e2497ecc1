"""The function under functions-framework and the API under uvicorn, as real processes: start,
wait for, pause and stop them (tests/api/test_e2e.py, test_process_faults.py)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from api.config import REPO_ROOT

BIN = Path(sys.executable).parent
MEDIA_KEY = "e2e-media-signing-key-" + "z" * 32
WEBHOOK_KEY = "e2e-webhook-encryption-key-" + "w" * 32
ADMIN_KEY = "e2e-admin-key-" + "a" * 32
LOG_CONFIG = "api/observability/logging.json"
SERVE_FUNCTION = ["--target", "generate_animal_avatar", "--source", "cloud_functions/main.py"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: the process exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def bind(port: int) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(port)]


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A server in a process group of its own (so that pausing it pauses its workers too)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGCONT)  # a paused group would not act on the TERM
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def pause(process: subprocess.Popen[bytes]) -> None:
    """Freeze the server and its workers: connections queue up, nothing answers."""
    os.killpg(process.pid, signal.SIGSTOP)


def resume(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGCONT)


@dataclass
class Stack:
    """The environment both servers share, and how to start each."""

    env: dict[str, str]
    api_url: str
    function_url: str
    logs: Path

    def start_function(self) -> subprocess.Popen[bytes]:
        port = self.function_url.rsplit(":", 1)[1]
        command = [str(BIN / "functions-framework"), *SERVE_FUNCTION, *bind(int(port))]
        process = start(command, self.env, self.logs / "function.log")
        wait_until_up(self.function_url, process)
        return process

    def start_api(self, *, workers: int = 1, **env: str) -> subprocess.Popen[bytes]:
        """uvicorn as deployed (its logging from api/observability/logging.json)."""
        port = self.api_url.rsplit(":", 1)[1]
        command = [str(BIN / "uvicorn"), "api.main:create_app", "--factory", *bind(int(port)),
                   "--log-config", LOG_CONFIG, "--workers", str(workers)]  # fmt: skip
        process = start(command, self.env | env, self.logs / "api.log")
        wait_until_up(f"{self.api_url}/healthz", process)
        return process

    def api_log(self) -> str:
        return (self.logs / "api.log").read_text(errors="replace")

    def function_log(self) -> str:
        return (self.logs / "function.log").read_text(errors="replace")


def stack(database_url: str, tmp_path: Path, **env: str) -> Stack:
    """Settings for the two servers on free loopback ports, files under `tmp_path`."""
    api_url = f"http://127.0.0.1:{free_port()}"
    function_url = f"http://127.0.0.1:{free_port()}"
    shared = os.environ | {
        "ENVIRONMENT": "test",
        "AVATAR_BACKEND": "local",
        "STORAGE_DIR": str(tmp_path / "media"),
        "MEDIA_SIGNING_KEY": MEDIA_KEY,
        "MEDIA_BASE_URL": f"{api_url}/media",
        "PUBLIC_BASE_URL": api_url,
        "ADMIN_API_KEY": ADMIN_KEY,
        "WEBHOOK_ENCRYPTION_KEY": WEBHOOK_KEY,
        "DATABASE_URL": database_url,
        "FUNCTION_URL": function_url,
    }
    return Stack(shared | env, api_url, function_url, tmp_path)


@contextmanager
def serving(database_url: str, tmp_path: Path, **env: str) -> Iterator[Stack]:
    """The function and the API running, wired together, on a database migrated to head."""
    from api_testing import run_alembic

    run_alembic(database_url, "upgrade", "head")
    servers = stack(database_url, tmp_path, **env)
    function = servers.start_function()
    try:
        api = servers.start_api()
        try:
            yield servers
        finally:
            stop(api)
    finally:
        stop(function)


def sample_jpeg(name: str) -> bytes:
    """A photograph that ships with scikit-image (`astronaut`, `coffee`...), as a JPEG."""
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(getattr(data, name)()).save(out, "JPEG", quality=90)
    return out.getvalue()


def astronaut_jpeg() -> bytes:
    return sample_jpeg("astronaut")

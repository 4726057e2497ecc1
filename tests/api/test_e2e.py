"""End to end: the function under functions-framework and the API under uvicorn, as processes.

A real photo is uploaded to the API over HTTP, the history is read back, and the avatar is
downloaded through the API's signed /media link.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import run_alembic
from PIL import Image

from api.config import REPO_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
MEDIA_KEY = "e2e-media-signing-key-" + "z" * 32
WEBHOOK_KEY = "e2e-webhook-encryption-key-" + "w" * 32
ADMIN_KEY = "e2e-admin-key-" + "a" * 32


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
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def services(fresh_database_url: str, tmp_path: Path) -> Iterator[str]:
    """The function and the API, wired together; yields the API's base URL."""
    run_alembic(fresh_database_url, "upgrade", "head")
    api_port, function_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = os.environ | {
        "ENVIRONMENT": "test",
        "AVATAR_BACKEND": "local",
        "STORAGE_DIR": str(tmp_path / "media"),
        "MEDIA_SIGNING_KEY": MEDIA_KEY,
        "MEDIA_BASE_URL": f"{api_url}/media",
        "PUBLIC_BASE_URL": api_url,
        "ADMIN_API_KEY": ADMIN_KEY,
        "WEBHOOK_ENCRYPTION_KEY": WEBHOOK_KEY,
        "DATABASE_URL": fresh_database_url,
        "FUNCTION_URL": f"http://127.0.0.1:{function_port}",
    }
    serve_function = ["--target", "generate_animal_avatar", "--source", "cloud_functions/main.py"]
    function = start(
        [str(BIN / "functions-framework"), *serve_function, *bind(function_port)],
        env,
        tmp_path / "function.log",
    )
    api = start(
        [str(BIN / "uvicorn"), "api.main:create_app", "--factory", *bind(api_port)],
        env,
        tmp_path / "api.log",
    )
    try:
        wait_until_up(env["FUNCTION_URL"], function)
        wait_until_up(f"{api_url}/healthz", api)
        yield api_url
    finally:
        stop(api)
        stop(function)


def astronaut_jpeg() -> bytes:
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(data.astronaut()).save(out, "JPEG", quality=90)
    return out.getvalue()


def test_upload_history_and_download_across_real_processes(services: str) -> None:
    with httpx.Client(base_url=services, timeout=60) as client:
        signup = client.post("/v1/users", json={"username": "e2e", "email": "e2e@example.com"})
        assert signup.status_code == 201, signup.text
        headers = {"Authorization": f"Bearer {signup.json()['api_key']}"}
        files = {"image": ("astronaut.jpg", astronaut_jpeg(), "image/jpeg")}

        created = client.post(
            "/v1/generations", headers=headers, files=files, data={"animal": "fox"}
        )
        assert created.status_code == 201, created.text
        record = created.json()
        assert record["status"] == "succeeded"
        assert record["faces"]

        accepted = client.post(
            "/v1/generations",
            headers=headers | {"Prefer": "respond-async"},
            files=files,
            data={"animal": "bear"},
        )
        assert accepted.status_code == 202, accepted.text
        deadline = time.monotonic() + 60
        while (polled := client.get(accepted.headers["location"], headers=headers).json())[
            "status"
        ] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert polled["status"] == "succeeded", polled

        history = client.get("/v1/generations", headers=headers).json()["items"]
        assert [item["id"] for item in history] == [polled["id"], record["id"]]
        image = httpx.get(history[1]["image_url"], timeout=10)
        assert image.status_code == 200
        assert Image.open(io.BytesIO(image.content)).size[0] > 0
        tampered = httpx.get(history[1]["image_url"].replace("signature=", "signature=0"))
        assert tampered.status_code in (403, 404)

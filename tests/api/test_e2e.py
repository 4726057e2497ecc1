"""End to end: the function under functions-framework and the API under uvicorn, as processes.

A real photo is uploaded to the API over HTTP, the history is read back, and the avatar is
downloaded through the API's signed /media link.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from process_testing import astronaut_jpeg, serving

pytestmark = pytest.mark.slow


@pytest.fixture
def services(fresh_database_url: str, tmp_path: Path) -> Iterator[str]:
    """The function and the API, wired together; yields the API's base URL."""
    with serving(fresh_database_url, tmp_path) as servers:
        yield servers.api_url


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

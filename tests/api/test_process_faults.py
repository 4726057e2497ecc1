"""Faults only real processes have: a function paused past the API's timeout (its late result
must not be stored), and an API killed with SIGKILL mid-work (another picks the work up soon,
and says so in its log)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from api_testing import run_alembic, stored_files
from process_testing import astronaut_jpeg, pause, resume, stack, stop

pytestmark = pytest.mark.slow


def signup(client: httpx.Client, name: str) -> dict[str, str]:
    created = client.post("/v1/users", json={"username": name, "email": f"{name}@example.com"})
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['api_key']}"}


def test_a_function_that_answers_after_the_api_gave_up_stores_nothing(
    fresh_database_url: str, tmp_path: Path
) -> None:
    run_alembic(fresh_database_url, "upgrade", "head")
    servers = stack(fresh_database_url, tmp_path, FUNCTION_TIMEOUT_S="3")
    function = servers.start_function()
    api = servers.start_api()
    try:
        with httpx.Client(base_url=servers.api_url, timeout=30) as client:
            headers = signup(client, "paused")
            pause(function)  # the request waits in the function's queue; nothing answers
            response = client.post(
                "/v1/generations",
                headers=headers,
                files={"image": ("a.jpg", astronaut_jpeg(), "image/jpeg")},
                data={"animal": "fox"},
            )
            assert response.status_code == 504, response.text
            resume(function)  # now it runs the request, past the deadline the API sent
            time.sleep(3)
            record = client.get("/v1/generations", headers=headers).json()["items"][0]
            assert record["status"] == "failed"
            assert stored_files(tmp_path / "media") == []
            answered = client.post(  # the function itself is fine
                "/v1/generations",
                headers=headers,
                files={"image": ("a.jpg", astronaut_jpeg(), "image/jpeg")},
                data={"animal": "fox"},
            )
            assert answered.status_code == 201, answered.text
    finally:
        stop(api)
        stop(function)
    function_log = (tmp_path / "function.log").read_text(errors="replace")
    assert "a request outlived its caller's deadline" in function_log


def test_work_of_a_killed_api_is_resumed_soon_and_logged(
    fresh_database_url: str, tmp_path: Path
) -> None:
    run_alembic(fresh_database_url, "upgrade", "head")
    stale_s = 2
    servers = stack(fresh_database_url, tmp_path, GENERATION_STALE_AFTER_S=str(stale_s))
    function = servers.start_function()
    first = servers.start_api()
    second = None
    try:
        with httpx.Client(base_url=servers.api_url, timeout=30) as client:
            headers = signup(client, "killed")
            pause(function)
            accepted = client.post(
                "/v1/generations",
                headers=headers | {"Prefer": "respond-async"},
                files={"image": ("a.jpg", astronaut_jpeg(), "image/jpeg")},
                data={"animal": "panda"},
            )
            assert accepted.status_code == 202, accepted.text
            location = accepted.headers["location"]
            for _ in range(100):
                if client.get(location, headers=headers).json()["status"] == "processing":
                    break
                time.sleep(0.05)
            os.killpg(first.pid, signal.SIGKILL)  # no shutdown: its records stay `processing`
            first.wait()
            killed_at = time.monotonic()
            resume(function)
            second = servers.start_api()
            record: dict[str, str] = {}
            while time.monotonic() - killed_at < 30:
                record = client.get(location, headers=headers).json()
                if record["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.1)
            recovered_after_s = time.monotonic() - killed_at
    finally:
        for process in (second, first):
            if process is not None:
                stop(process)
        stop(function)
    assert record["status"] == "succeeded", record
    # Stale after 2 s, found by a sweep every 1 s, plus the new process's start-up.
    assert recovered_after_s < stale_s * 1.5 + 8
    assert "was left unfinished by a process that stopped" in servers.api_log()

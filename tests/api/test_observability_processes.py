"""Observability of the real servers: the API's JSON lines and the function's share one trace
per upload; /metrics adds up the workers of a multi-worker uvicorn."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from observability_testing import sample, samples
from process_testing import ADMIN_KEY, astronaut_jpeg, serving, stack, stop

pytestmark = pytest.mark.slow

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
ENV = {"LOG_FORMAT": "json", "GOOGLE_CLOUD_PROJECT": "demo-project"}


# What LiteRT's C++ runtime prints to stderr itself, past Python's logging, as it loads a model.
NATIVE = re.compile(r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a server's log as the JSON object it must be."""
    lines = []
    for line in text.splitlines():
        if NATIVE.fullmatch(line):
            continue
        entry = json.loads(line)  # a line that is not JSON fails here, named by the error
        assert {"severity", "message", "time"} <= entry.keys(), line
        lines.append(entry)
    return lines


def test_one_uploads_lines_in_the_api_and_the_function_share_its_trace(database_url, tmp_path):
    with (
        serving(database_url, tmp_path, **ENV) as servers,
        httpx.Client(base_url=servers.api_url, timeout=60) as client,
    ):
        signed_up = client.post("/v1/users", json={"username": "tracy", "email": "t@x.test"})
        key = signed_up.json()["api_key"]
        response = client.post(
            "/v1/generations",
            files={"image": ("selfie.jpg", astronaut_jpeg(), "image/jpeg")},
            data={"animal": "fox"},
            headers={
                "Authorization": f"Bearer {key}",
                "traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01",
            },
        )
        assert response.status_code == 201, response.text

    trace = f"projects/demo-project/traces/{TRACE_ID}"
    api = [line for line in json_lines(servers.api_log()) if _trace(line) == trace]
    function = [line for line in json_lines(servers.function_log()) if _trace(line) == trace]
    (access,) = [line for line in api if "httpRequest" in line]
    assert access["httpRequest"]["requestUrl"] == "/v1/generations"
    assert access["httpRequest"]["status"] == 201
    assert function, "the function wrote no line under the upload's trace"
    assert all(line["logging.googleapis.com/trace_sampled"] for line in api + function)
    # Each service's lines name a span of its own under the shared trace.
    assert {line["logging.googleapis.com/spanId"] for line in api}.isdisjoint(
        line["logging.googleapis.com/spanId"] for line in function
    )


def _trace(line: dict[str, Any]) -> str | None:
    return line.get("logging.googleapis.com/trace")


def test_metrics_add_up_the_workers_of_a_multi_worker_server(database_url, tmp_path: Path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    servers = stack(database_url, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(folder), **ENV)
    from api_testing import run_alembic

    run_alembic(database_url, "upgrade", "head")
    api = servers.start_api(workers=2)
    try:
        asked = _until_two_workers_answered(servers.api_url, folder, api)
        scrapes = [
            samples(httpx.get(f"{servers.api_url}/metrics", headers=_admin(), timeout=10).text)
            for _ in range(6)
        ]
    finally:
        stop(api)
    animals = sample("http_requests_total", route="/v1/animals", method="GET", status="200")
    # Whichever worker answered the scrape, it counted every worker's requests.
    assert [found[animals] for found in scrapes] == [asked] * len(scrapes)


def _until_two_workers_answered(url: str, folder: Path, api: subprocess.Popen[bytes]) -> int:
    """GET /v1/animals, each on a new connection, until two workers have counted some (each
    worker keeps its values in files named by its pid); how many were asked."""
    asked = 0
    while asked < 400:
        response = httpx.get(f"{url}/v1/animals", timeout=10)
        assert response.status_code == 200
        asked += 1
        pids = {
            int(match.group(1))
            for path in folder.iterdir()
            if (match := re.fullmatch(r"counter_(\d+)\.db", path.name))
        }
        if len(pids - {api.pid, os.getpid()}) >= 2:
            return asked
    raise AssertionError("one worker answered every request")


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}

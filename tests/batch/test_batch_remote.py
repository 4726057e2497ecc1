"""`--function-url`: the job calls a deployed function (here the real one, served on loopback)
and downloads each result from the link it answers; retries, refusals and ID tokens."""

from __future__ import annotations

import base64
import functools
import json
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from batch_testing import FACES, INPUTS, NO_FACE, RunBatch
from werkzeug.serving import make_server

from batch.errors import BatchError
from batch.locations import Folder, Item
from batch.remote import FunctionWorker, IdToken
from batch.work import Spec, Task

REPO = Path(__file__).resolve().parents[2]
MAIN_PY = REPO / "cloud_functions" / "main.py"


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def deployed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The real function under a real HTTP server on loopback, its store's files served as
    the media links it signs point (the API serves them in production); yields its URL."""
    import functions_framework

    from avatar.config import get_settings

    root = tmp_path / "served"
    media = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=root))
    monkeypatch.setenv("STORAGE_DIR", str(root / "media"))
    monkeypatch.setenv("MEDIA_BASE_URL", f"http://127.0.0.1:{media.server_address[1]}/media")
    get_settings.cache_clear()
    app = functions_framework.create_app(target="generate_animal_avatar", source=str(MAIN_PY))
    function = make_server("127.0.0.1", 0, app, threaded=True)
    servers = (media, function)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield f"http://127.0.0.1:{function.server_port}/"
    for server in servers:
        server.shutdown()
    get_settings.cache_clear()


def test_through_a_deployed_function(
    run_batch: RunBatch, deployed: str, inputs: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    run = run_batch("--input", str(inputs), "--output", str(output), "--animal", "fox,cat",
                    "--function-url", deployed, "--workers", "3")  # fmt: skip

    assert run.code == 0, run.err
    lines = [json.loads(line) for line in (output / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * len(INPUTS)
    for line in lines:
        name = line["input"].removeprefix(f"{inputs}/")
        if name in FACES:
            assert line["status"] == "succeeded", line
            assert len(line["faces"]) == 1
            assert Path(line["output"]).read_bytes()[:3] == b"\xff\xd8\xff"
        else:
            assert line["status"] == "failed"
    codes = {line["input"].removeprefix(f"{inputs}/"): line["error"] for line in lines}
    assert codes[NO_FACE]["code"] == "no_face_detected"
    assert codes["broken.jpg"]["code"] == "invalid_image"
    assert codes["notes.txt"]["code"] == "unsupported_image"


# --- the worker against scripted answers ---------------------------------------------------------

URL = "https://function.test/"
IMAGE_URL = "https://storage.test/avatars/batch/g.jpg?signature=x"


def answer(animals: list[str]) -> dict[str, Any]:
    results = [
        {"animal": a, "image_url": IMAGE_URL, "object_name": "avatars/batch/g.jpg", "error": None}
        for a in animals
    ]
    return {"results": results, "faces": [{"box": {}}], "width": 1, "height": 1}


def worker(
    tmp_path: Path, handler: Any, token: IdToken | None = None, *, style: str = "character"
) -> FunctionWorker:
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "a.jpg").write_bytes(b"\xff\xd8\xff-a-selfie")
    spec = Spec(Folder("in", tmp_path / "in"), Folder("out", tmp_path / "out"), style=style)
    return FunctionWorker(spec, URL, auth="none" if token is None else "id_token", token=token,
                          transport=httpx.MockTransport(handler), sleep=lambda s: None)  # fmt: skip


TASK = Task(Item("a.jpg", 16), ("fox",))


@pytest.mark.parametrize("style", ["character", "paint"])
def test_the_jobs_style_is_sent_with_the_animals(tmp_path: Path, style: str) -> None:
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, content=b"\xff\xd8\xffimage")
        sent.append(request.read())
        return httpx.Response(200, json=answer(["fox"]))

    [result] = worker(tmp_path, handler, style=style)(TASK)

    assert result.succeeded
    [body] = sent
    assert f'name="style"\r\n\r\n{style}\r\n'.encode() in body


def test_throttling_and_outages_are_retried(tmp_path: Path) -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(503)])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, content=b"\xff\xd8\xffimage")
        return next(answers, None) or httpx.Response(200, json=answer(["fox"]))

    [result] = worker(tmp_path, handler)(TASK)

    assert result.succeeded
    assert (tmp_path / "out" / "a.jpg.fox.jpg").read_bytes() == b"\xff\xd8\xffimage"


def test_an_outage_that_lasts_fails_the_input_only(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("no answer", request=request)

    [result] = worker(tmp_path, handler)(TASK)

    assert result.error is not None
    assert result.error[0] == "upstream_timeout"


def test_the_functions_answer_about_an_image_is_its_line(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"error": "no_face_detected", "detail": "no face"})

    [result] = worker(tmp_path, handler)(TASK)

    assert result.error == ("no_face_detected", "no face")


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(403, text="<html>Forbidden</html>"), "roles/run.invoker"),
        (httpx.Response(404, text="<html>Not Found</html>"), "is it the avatar function's URL"),
    ],
)
def test_a_refusal_or_a_wrong_url_stops_the_job(
    tmp_path: Path, response: httpx.Response, message: str
) -> None:
    with pytest.raises(BatchError, match=message):
        worker(tmp_path, lambda request: response)(TASK)


def jwt(expires: float, serial: int) -> str:
    """An unsigned token with the claims the cache reads (the function checks signatures)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"exp": expires, "aud": URL, "n": serial}
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_an_id_token_for_the_functions_url_is_sent_and_refreshed_once_refused(
    tmp_path: Path,
) -> None:
    fetched: list[str] = []

    def fetch(audience: str) -> str:
        fetched.append(audience)
        return jwt(time.time() + 3600, len(fetched))

    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            assert "authorization" not in request.headers  # a signed link needs no token
            return httpx.Response(200, content=b"\xff\xd8\xffimage")
        seen.append(request.headers.get("authorization"))
        if len(seen) == 1:
            return httpx.Response(401)  # the first token was revoked
        return httpx.Response(200, json=answer(["fox"]))

    [result] = worker(tmp_path, handler, token=IdToken(URL, fetch=fetch))(TASK)

    assert result.succeeded
    assert fetched == [URL, URL]  # for the function's URL; again after the refusal
    assert len(seen) == 2
    assert all(header and header.startswith("Bearer ey") for header in seen)
    assert seen[0] != seen[1]

"""A stand-in for the Cloud Function at the HTTP level (respx), and upload helpers."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, TypeVar

import httpx
import respx
from PIL import Image

S = TypeVar("S", bound=Callable[[httpx.Request], Any])

FUNCTION_URL = "http://function.test/"


@contextmanager
def function_stubbed(stub: S, *, loopback: bool = False) -> Iterator[S]:
    """respx answering the function's URL with `stub`; `loopback`: other servers the test runs
    on 127.0.0.1 are reached for real (any other host is refused, as respx does)."""
    with respx.mock(assert_all_called=False) as mock:
        if loopback:
            mock.route(host="127.0.0.1").pass_through()
        mock.post(FUNCTION_URL).mock(side_effect=stub)
        yield stub


def parse_multipart(request: httpx.Request) -> dict[str, tuple[bytes, str]]:
    """The parts of a multipart request: name -> (bytes, content type)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    parts: dict[str, tuple[bytes, str]] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        parts[name] = (payload, part.get_content_type())
    return parts


@dataclass
class FunctionStub:
    """Answers like the function (one animal, or the `animals` form); records what it was sent;
    can be held until released. `animal_errors`: animal -> the error code its result carries
    in the `animals` form (the others succeed)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    gate: asyncio.Event | None = None
    animal_errors: dict[str, str] = field(default_factory=dict)
    received: list[dict[str, tuple[bytes, str]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = parse_multipart(request)
        self.received.append(parts)
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        body = self.body if self.body is not None else self.success(parts)
        return httpx.Response(self.status, json=body, headers=self.headers)

    def success(self, parts: dict[str, tuple[bytes, str]]) -> dict[str, Any]:
        user_id = parts["user_id"][0].decode()
        answer: dict[str, Any] = {
            "image_url": "http://elsewhere/ignored.png",
            "faces": [
                {
                    "box": {"x": 10, "y": 20, "width": 30, "height": 40},
                    "landmarks": {"nose_tip": {"x": 25, "y": 40}},
                    "confidence": 0.97,
                    "roll_deg": 1.5,
                }
            ],
            "backend": "local",
            "timings_ms": {"decode": 1.5, "detect": 2.0, "total": 12.25},
        }
        if "animals" not in parts:
            generation_id = parts["generation_id"][0].decode()
            answer["object_name"] = f"avatars/{user_id}/{generation_id}.png"
            answer["animal"] = parts["animal"][0].decode()
            return answer
        animals = parts["animals"][0].decode().split(",")
        generation_ids = parts["generation_ids"][0].decode().split(",")
        answer["results"] = [
            self.result(user_id, animal, generation_id)
            for animal, generation_id in zip(animals, generation_ids, strict=True)
        ]
        return answer

    def result(self, user_id: str, animal: str, generation_id: str) -> dict[str, Any]:
        """One animal's entry in the `animals` form's answer."""
        code = self.animal_errors.get(animal)
        return {
            "animal": animal,
            "generation_id": generation_id,
            "image_url": None if code else "http://elsewhere/ignored.png",
            "object_name": None if code else f"avatars/{user_id}/{generation_id}.png",
            "error": code,
            "detail": f"{animal}: {code}" if code else None,
            "timings_ms": {"compose": 3.0, "store": 1.0},
        }


def a_selfie(size: tuple[int, int] = (2400, 1800), *, gps: bool = False) -> bytes:
    """A JPEG of the given size (optionally with GPS EXIF), standing in for a phone photo."""
    image = Image.new("RGB", size, (180, 140, 120))
    exif = Image.Exif()
    if gps:
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, exif=exif)
    return out.getvalue()


async def upload(
    client: httpx.AsyncClient,
    key: str,
    image: bytes,
    animal: str = "fox",
    *,
    style: str | None = None,
    **headers: str,
) -> httpx.Response:
    """POST /v1/generations with an image file and an animal (and a `style` when given)."""
    fields = {"animal": animal} | ({"style": style} if style is not None else {})
    return await _post_form(client, "/v1/generations", key, image, fields, headers)


async def upload_pack(
    client: httpx.AsyncClient,
    key: str,
    image: bytes,
    animals: str = "fox,cat,panda",
    *,
    style: str | None = None,
    **headers: str,
) -> httpx.Response:
    """POST /v1/packs with an image file and the animals (and a `style` when given)."""
    fields = {"animals": animals} | ({"style": style} if style is not None else {})
    return await _post_form(client, "/v1/packs", key, image, fields, headers)


async def _post_form(
    client: httpx.AsyncClient,
    path: str,
    key: str,
    image: bytes,
    fields: dict[str, str],
    headers: dict[str, str],
) -> httpx.Response:
    """A multipart upload with the key; `headers` by keyword (`prefer=` is `Prefer:`)."""
    sent = {"Authorization": f"Bearer {key}"} | {
        name.replace("_", "-"): value for name, value in headers.items()
    }
    return await client.post(
        path, files={"image": ("selfie.jpg", image, "image/jpeg")}, data=fields, headers=sent
    )


class WSGIThreadTransport(httpx.AsyncBaseTransport):
    """An async transport into a WSGI app (the real function), each call run in a thread."""

    def __init__(self, app: Any) -> None:
        self._sync = httpx.WSGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        plain = httpx.Request(request.method, request.url, headers=request.headers, content=body)
        response = await asyncio.to_thread(self._sync.handle_request, plain)
        content = await asyncio.to_thread(response.read)
        return httpx.Response(response.status_code, headers=response.headers, content=content)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["code"], body["status"]) == (code, status)
    return body


async def wait_finished(client: httpx.AsyncClient, key: str, location: str) -> dict[str, Any]:
    """Poll a record (or a pack) until it is succeeded, partial or failed (at most 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = await client.get(location, headers={"Authorization": f"Bearer {key}"})
        body: dict[str, Any] = answer.json()
        if body["status"] in ("succeeded", "partial", "failed"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{location} did not finish: {body}")

"""Packs (the `animals` form) with the gcp backends: Vision and Vertex AI answered by local fakes,
Cloud Storage by the emulator. One animal's refusal or failure is its result's error alone, and
the Vertex calls of a pack run at the same time."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
from flask.testing import FlaskClient
from PIL import Image
from werkzeug.test import TestResponse

from tests.cloud_functions.gcp.fakes import (
    BUCKET,
    PINK,
    FakeServer,
    Reply,
    prompted_animal,
    running,
    vertex_blocked_candidate,
    vertex_blocked_prompt,
    vertex_image_reply,
    vertex_per_animal,
    vertex_text_reply,
    vision_reply,
)

DRAWN = Reply(vertex_image_reply(Image.new("RGB", (1024, 1024), PINK), fmt="JPEG"))


@pytest.fixture
def answers() -> dict[str, Reply]:
    """The fake model's reply per animal (tests fill it in); any other animal is drawn pink."""
    return {}


@pytest.fixture
def vertex(answers: dict[str, Reply]) -> Iterator[FakeServer]:
    """Vertex AI answering each animal's request as `answers` says (replaces conftest's)."""
    with running(vertex_per_animal(answers, DRAWN)) as server:
        yield server


def post_pack(client: FlaskClient, photo: Image.Image, animals: list[str]) -> TestResponse:
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92)
    ids = [f"pack-{animal}" for animal in animals]
    query = f"animals={','.join(animals)}&generation_ids={','.join(ids)}&user_id=u9"
    return client.post(f"/?{query}", data=buffer.getvalue(), content_type="image/jpeg")


def stored(emulator: str, object_name: str) -> bool:
    url = f"{emulator}/storage/v1/b/{BUCKET}/o/{quote(object_name, safe='')}"
    return requests.get(url, timeout=5).status_code == 200


def by_animal(response: TestResponse) -> dict[str, dict[str, Any]]:
    return {result["animal"]: result for result in response.get_json()["results"]}


def test_blocked_and_imageless_animals_fail_alone(
    client: FlaskClient,
    vision: FakeServer,
    vertex: FakeServer,
    answers: dict[str, Reply],
    emulator: str,
    astronaut: Image.Image,
) -> None:
    answers["cat"] = Reply(vertex_blocked_candidate("SAFETY"))
    answers["fox"] = Reply(vertex_blocked_prompt())
    answers["panda"] = Reply(vertex_text_reply("No image this time."))  # no fallback in gcp_env

    response = post_pack(client, astronaut, ["koala", "cat", "fox", "panda", "tiger"])

    assert response.status_code == 200, response.get_json()
    assert [r["animal"] for r in response.get_json()["results"]] == [
        "koala", "cat", "fox", "panda", "tiger",
    ]  # fmt: skip
    results = by_animal(response)
    assert results["cat"]["error"] == "content_blocked"
    assert "SAFETY" in results["cat"]["detail"]
    assert results["fox"]["error"] == "content_blocked"
    assert "PROHIBITED_CONTENT" in results["fox"]["detail"]
    assert results["panda"]["error"] == "upstream_unavailable"
    for animal in ("cat", "fox", "panda"):
        assert (results[animal]["image_url"], results[animal]["object_name"]) == (None, None)
        assert not stored(emulator, f"avatars/u9/pack-{animal}.jpg")
    for animal in ("koala", "tiger"):
        result = results[animal]
        assert (result["error"], result["detail"]) == (None, None)
        assert result["object_name"] == f"avatars/u9/pack-{animal}.jpg"
        fetched = requests.get(result["image_url"], timeout=5)
        assert fetched.status_code == 200
        assert Image.open(io.BytesIO(fetched.content)).size == astronaut.size
    assert len(vision.requests) == 1  # the face is found once for the whole pack
    assert sorted(prompted_animal(r) or "" for r in vertex.requests) == sorted(
        ["koala", "cat", "fox", "panda", "tiger"]
    )


def test_a_pack_whose_every_animal_fails_is_still_200(
    client: FlaskClient, answers: dict[str, Reply], astronaut: Image.Image
) -> None:
    answers.update(dict.fromkeys(["cat", "dog"], Reply(vertex_blocked_candidate())))

    response = post_pack(client, astronaut, ["cat", "dog"])

    assert response.status_code == 200
    assert [r["error"] for r in response.get_json()["results"]] == ["content_blocked"] * 2


def test_a_pack_without_a_face_is_one_422(
    client: FlaskClient, vision: FakeServer, vertex: FakeServer, astronaut: Image.Image
) -> None:
    vision.script(Reply(vision_reply([])))

    response = post_pack(client, astronaut, ["cat", "dog"])

    assert response.status_code == 422
    assert response.get_json()["error"] == "no_face_detected"
    assert vertex.requests == []


def test_the_vertex_calls_of_a_pack_run_at_once(
    client: FlaskClient, answers: dict[str, Reply], astronaut: Image.Image
) -> None:
    pack = ["cat", "dog", "fox", "bear", "rabbit"]
    answers.update(dict.fromkeys(pack, Reply(DRAWN.body, delay_s=0.3)))

    started = time.perf_counter()
    response = post_pack(client, astronaut, pack)
    elapsed_s = time.perf_counter() - started

    assert response.status_code == 200, response.get_json()
    assert all(r["error"] is None for r in response.get_json()["results"])
    assert elapsed_s < 1.2  # one after another would take 5 x 0.3 s
    compose_ms = response.get_json()["timings_ms"]["compose"]
    assert compose_ms >= 5 * 300  # summed over the animals, each of which waited 0.3 s

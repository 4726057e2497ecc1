"""The real function (cloud_functions/main.py under functions-framework) with the gcp backends:
Vision and Vertex answered by local fakes, Cloud Storage by the emulator."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from flask.testing import FlaskClient
from PIL import Image

from avatar.config import get_settings
from avatar.faces import Face
from avatar.masking import ContourMasker
from tests.cloud_functions.gcp.fakes import (
    ASTRONAUT_FACE,
    BUCKET,
    PINK,
    VERTEX_MODEL,
    FakeServer,
    Reply,
    face_at,
    google_error,
    inline_image,
    prompt_text,
    vertex_image_reply,
    vertex_text_reply,
    vision_reply,
)


def astronaut_face() -> Face:
    """The Face the detector makes of ASTRONAUT_FACE, to rebuild the mask the function used."""
    return face_at(171, 61, 110)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_selfie_in_object_stored_signed_url_out_and_only_the_face_changed(
    client: FlaskClient, vision: FakeServer, vertex: FakeServer, astronaut: Image.Image
) -> None:
    # RGBA in → PNG out, so the comparison below is lossless.
    selfie = astronaut.convert("RGBA")
    form = {"image": (io.BytesIO(png(selfie)), "selfie.png"), "animal": "panda",
            "user_id": "u1", "generation_id": "g1"}  # fmt: skip
    response = client.post("/", data=form, content_type="multipart/form-data")

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["backend"] == "gcp"
    assert body["object_name"] == "avatars/u1/g1.png"
    assert body["faces"][0]["landmarks"]["right_eye"] == {"x": 204.0, "y": 102.8}

    assert len(vision.requests) == 1
    [generate] = vertex.requests
    assert generate.path.endswith(f"/publishers/google/models/{VERTEX_MODEL}:generateContent")
    assert "panda" in prompt_text(generate)
    assert inline_image(generate)[0] == "image/jpeg"

    fetched = requests.get(body["image_url"], timeout=5)
    assert fetched.status_code == 200
    assert fetched.headers["Content-Type"] == "image/png"
    result = Image.open(io.BytesIO(fetched.content))
    assert (result.size, result.mode) == (selfie.size, "RGBA")
    assert (body["width"], body["height"]) == result.size

    mask = np.asarray(ContourMasker().face_mask(astronaut, astronaut_face()))
    before, after = np.asarray(selfie), np.asarray(result)
    assert np.array_equal(after[mask == 0], before[mask == 0])
    assert np.abs(after[mask == 255][:, :3].astype(int) - PINK).max() <= 2


def test_a_jpeg_referenced_by_gcs_uri(
    client: FlaskClient, emulator: str, astronaut: Image.Image
) -> None:
    buffer = io.BytesIO()
    astronaut.save(buffer, format="JPEG", quality=92)
    upload = requests.post(
        f"{emulator}/upload/storage/v1/b/{BUCKET}/o",
        params={"uploadType": "media", "name": "uploads/u2/selfie.jpg"},
        data=buffer.getvalue(), headers={"Content-Type": "image/jpeg"}, timeout=5,
    )  # fmt: skip
    assert upload.status_code == 200

    response = client.post(
        "/", json={"gcs_uri": f"gs://{BUCKET}/uploads/u2/selfie.jpg", "animal": "fox",
                   "user_id": "u2", "generation_id": "g2"},
    )  # fmt: skip

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["object_name"] == "avatars/u2/g2.jpg"
    fetched = requests.get(body["image_url"], timeout=5)
    assert fetched.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(fetched.content)).size == astronaut.size


@pytest.mark.parametrize("name", ["avatars/u1/g1.png", "inputs/u2/selfie.jpg"])
def test_gcs_uri_outside_uploads_is_400(
    client: FlaskClient, emulator: str, vision: FakeServer, name: str
) -> None:
    stored = requests.post(
        f"{emulator}/upload/storage/v1/b/{BUCKET}/o",
        params={"uploadType": "media", "name": name},
        data=b"\xff\xd8\xff", headers={"Content-Type": "image/jpeg"}, timeout=5,
    )  # fmt: skip
    assert stored.status_code == 200

    response = client.post("/", json={"gcs_uri": f"gs://{BUCKET}/{name}", "animal": "fox"})

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert vision.requests == []


def test_safe_search_block_is_422_content_blocked(
    client: FlaskClient, vision: FakeServer, vertex: FakeServer, astronaut: Image.Image
) -> None:
    vision.script(Reply(vision_reply([ASTRONAUT_FACE], racy="VERY_LIKELY")))
    response = client.post("/?animal=cat", data=png(astronaut), content_type="image/png")
    assert response.status_code == 422
    assert response.get_json()["error"] == "content_blocked"
    assert vertex.requests == []


def test_quota_to_the_end_is_503_with_retry_after(
    client: FlaskClient, vertex: FakeServer, astronaut: Image.Image
) -> None:
    vertex.script(Reply(google_error(429, "RESOURCE_EXHAUSTED"), 429, {"Retry-After": "42"}))
    response = client.post("/?animal=cat", data=png(astronaut), content_type="image/png")
    assert response.status_code == 503
    assert response.get_json()["error"] == "upstream_unavailable"
    assert response.headers["Retry-After"] == "42"


def test_a_model_that_never_answers_is_504(
    client: FlaskClient, vertex: FakeServer, astronaut: Image.Image
) -> None:
    vertex.script(Reply(vertex_image_reply(Image.new("RGB", (8, 8))), delay_s=10))
    response = client.post("/?animal=cat", data=png(astronaut), content_type="image/png")
    assert response.status_code == 504
    assert response.get_json()["error"] == "upstream_timeout"


def test_no_face_is_422(client: FlaskClient, vision: FakeServer, astronaut: Image.Image) -> None:
    vision.script(Reply(vision_reply([])))
    response = client.post("/?animal=cat", data=png(astronaut), content_type="image/png")
    assert response.status_code == 422
    assert response.get_json()["error"] == "no_face_detected"


def test_an_answer_without_an_image_falls_back_to_the_local_compositor(
    client: FlaskClient, vertex: FakeServer, astronaut: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPOSE_FALLBACK", "local")
    get_settings.cache_clear()
    vertex.script(Reply(vertex_text_reply("No image this time.")))
    selfie = astronaut.convert("RGBA")

    response = client.post("/?animal=cat", data=png(selfie), content_type="image/png")

    assert response.status_code == 200, response.get_json()
    assert len(vertex.requests) == 1
    result = Image.open(
        io.BytesIO(requests.get(response.get_json()["image_url"], timeout=5).content)
    )
    before, after = np.asarray(selfie).astype(int), np.asarray(result).astype(int)
    changed = np.abs(after - before).sum(axis=2) > 0
    ys, xs = np.nonzero(changed)
    # The local character paints the face and adds ears above it: all near the face box.
    box = astronaut_face().box
    assert box.x - box.width < xs.min()
    assert xs.max() < box.x + 2 * box.width
    assert box.y - box.height < ys.min()
    assert ys.max() < box.y + 2 * box.height
    mask = np.asarray(ContourMasker().face_mask(astronaut, astronaut_face()))
    assert changed[mask == 255].mean() > 0.5  # and it did draw on the face

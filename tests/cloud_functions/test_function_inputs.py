"""Every input format reaches the same pipeline; results are stored clean and signed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from function_testing import (
    MEDIA_BASE_URL,
    MEDIA_KEY,
    Post,
    encode,
    gps_jpeg,
    post_json,
    zip_with,
)
from PIL import Image

from avatar.backends.local import compositor as compositor_module
from avatar.backends.local.compositor import LocalCompositor
from avatar.faces import Face


def test_multipart(post_multipart: Post, astronaut_jpeg: bytes) -> None:
    response = post_multipart(astronaut_jpeg, animal="panda")

    assert response.status_code == 200
    assert response.get_json()["animal"] == "panda"


def test_raw_body_with_animal_in_query(client: FlaskClient, astronaut_jpeg: bytes) -> None:
    response = client.post("/?animal=Tiger", data=astronaut_jpeg, content_type="image/jpeg")

    assert response.status_code == 200
    assert response.get_json()["animal"] == "tiger"


def test_json_base64(client: FlaskClient, astronaut_jpeg: bytes) -> None:
    encoded = base64.b64encode(astronaut_jpeg).decode()
    response = client.post("/", json={"image_base64": encoded, "animal": "bear"})

    assert response.status_code == 200
    assert response.get_json()["animal"] == "bear"


def test_json_base64_data_url(client: FlaskClient, astronaut_jpeg: bytes) -> None:
    encoded = "data:image/jpeg;base64," + base64.b64encode(astronaut_jpeg).decode()
    response = client.post("/", json={"image_base64": encoded, "animal": "dog"})

    assert response.status_code == 200


@pytest.mark.parametrize("uri", ["gs://inputs-bucket/uploads/u1/in.jpg", "uploads/u1/in.jpg"])
def test_json_gcs_uri_reads_from_the_store(
    client: FlaskClient,
    storage_dir: Path,
    astronaut_jpeg: bytes,
    uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GCS_BUCKET", "inputs-bucket")  # the bucket the files stand in for
    (storage_dir / "uploads" / "u1").mkdir(parents=True, exist_ok=True)
    (storage_dir / "uploads" / "u1" / "in.jpg").write_bytes(astronaut_jpeg)

    response = client.post("/", json={"gcs_uri": uri, "animal": "fox"})

    assert response.status_code == 200
    assert len(response.get_json()["faces"]) == 1


def test_webp_and_png_inputs(post_multipart: Post, astronaut: Image.Image) -> None:
    assert post_multipart(encode(astronaut, "WEBP", quality=90)).status_code == 200
    assert post_multipart(encode(astronaut, "PNG")).status_code == 200


def test_object_named_by_user_and_generation(
    post_multipart: Post, storage_dir: Path, astronaut_jpeg: bytes
) -> None:
    body = post_multipart(astronaut_jpeg, user_id="user_42", generation_id="gen-7").get_json()

    assert body["object_name"] == "avatars/user_42/gen-7.jpg"
    stored = Image.open(storage_dir / "avatars" / "user_42" / "gen-7.jpg")
    assert stored.format == "JPEG"
    assert (body["width"], body["height"]) == stored.size


def test_answer_has_every_field_and_the_stored_size(
    post_multipart: Post, storage_dir: Path, astronaut_jpeg: bytes
) -> None:
    body = post_multipart(astronaut_jpeg).get_json()

    assert set(body) == {
        "image_url", "object_name", "animal", "width", "height", "faces", "backend", "timings_ms",
    }  # fmt: skip
    assert (body["width"], body["height"]) == Image.open(storage_dir / body["object_name"]).size
    box = body["faces"][0]["box"]
    assert box["x"] + box["width"] <= body["width"]
    assert box["y"] + box["height"] <= body["height"]


def test_default_names_are_anonymous_and_fresh(post_multipart: Post, astronaut_jpeg: bytes) -> None:
    first = post_multipart(astronaut_jpeg).get_json()["object_name"]
    second = post_multipart(astronaut_jpeg).get_json()["object_name"]

    assert first.startswith("avatars/anonymous/")
    assert first != second


def test_signed_url_follows_the_media_contract(post_multipart: Post, astronaut_jpeg: bytes) -> None:
    body = post_multipart(astronaut_jpeg, user_id="u1", generation_id="g1").get_json()

    url = urlsplit(body["image_url"])
    query = parse_qs(url.query)
    expires = query["expires"][0]
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{MEDIA_BASE_URL}/avatars/u1/g1.jpg"
    message = f"avatars/u1/g1.jpg\n{expires}".encode()
    expected = hmac.new(MEDIA_KEY.encode(), message, hashlib.sha256).hexdigest()
    assert query["signature"] == [expected]


def test_exif_and_gps_never_reach_storage(
    post_multipart: Post, storage_dir: Path, astronaut: Image.Image
) -> None:
    upload = gps_jpeg(astronaut)
    assert Image.open(io.BytesIO(upload)).getexif().get_ifd(0x8825)  # the input has GPS

    body = post_multipart(upload, generation_id="gps-check").get_json()

    raw = (storage_dir / body["object_name"]).read_bytes()
    assert not Image.open(io.BytesIO(raw)).getexif()
    assert b"Exif" not in raw
    assert b"Ada Lovelace" not in raw


def test_comments_and_xmp_never_reach_storage(
    post_multipart: Post, storage_dir: Path, astronaut: Image.Image
) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">home address</x:xmpmeta>'
    upload = encode(astronaut, comment=b"taken at home", xmp=xmp)
    assert b"taken at home" in upload
    assert b"home address" in upload

    body = post_multipart(upload).get_json()

    raw = (storage_dir / body["object_name"]).read_bytes()
    assert b"taken at home" not in raw
    assert b"home address" not in raw


def test_alpha_input_gives_png_with_alpha(
    post_multipart: Post, storage_dir: Path, astronaut: Image.Image
) -> None:
    rgba = astronaut.convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))

    body = post_multipart(encode(rgba, "PNG"), filename="selfie.png").get_json()

    assert body["object_name"].endswith(".png")
    stored = Image.open(storage_dir / body["object_name"])
    assert stored.mode == "RGBA"
    assert stored.getpixel((0, 0))[3] == 0


def test_polyglot_jpeg_zip_is_reencoded_without_payload(
    post_multipart: Post, storage_dir: Path, astronaut_jpeg: bytes
) -> None:
    polyglot = astronaut_jpeg + zip_with("evil.html", b"<script>alert(1)</script>")

    body = post_multipart(polyglot).get_json()

    raw = (storage_dir / body["object_name"]).read_bytes()
    assert b"PK\x03\x04" not in raw
    assert b"<script>" not in raw


def test_large_photo_is_worked_at_most_1600px(
    post_multipart: Post, storage_dir: Path, grace_hopper: Image.Image
) -> None:
    big = grace_hopper.resize((2400, 2812), Image.Resampling.BICUBIC)

    body = post_multipart(encode(big)).get_json()

    assert Image.open(storage_dir / body["object_name"]).size == (1200, 1406)  # 1/2 JPEG draft
    assert (body["width"], body["height"]) == (1200, 1406)
    assert body["faces"][0]["box"]["width"] > 350  # in the working (= stored) image's pixels


def test_concurrent_requests_each_get_their_own_result(
    client: FlaskClient, storage_dir: Path, astronaut_jpeg: bytes, grace_hopper_jpeg: bytes
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(i: int) -> tuple[int, str, int]:
        data = astronaut_jpeg if i % 2 else grace_hopper_jpeg
        response = client.post(
            f"/?animal=cat&generation_id=par-{i}", data=data, content_type="image/jpeg"
        )
        body = response.get_json()
        return response.status_code, body["object_name"], round(body["faces"][0]["box"]["width"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(post, range(8)))

    assert [status for status, _, _ in results] == [200] * 8
    assert len({name for _, name, _ in results}) == 8
    widths = {i % 2: width for i, (_, _, width) in enumerate(results)}
    assert all(width == widths[i % 2] for i, (_, _, width) in enumerate(results))


# --- the render style ---------------------------------------------------------------------------


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The local compositor, watched: (animal, style) of each call; it hands the image back
    undrawn (how each style looks is tests/cloud_functions/test_compositor.py's business)."""
    seen: list[tuple[str, str]] = []

    def compose(
        self: LocalCompositor,
        image: Image.Image,
        faces: Sequence[Face],
        masks: Sequence[Image.Image],
        animal: str,
        style: str = "unset",  # the pipeline always names one
    ) -> Image.Image:
        seen.append((animal, style))
        return image.copy()

    monkeypatch.setattr(LocalCompositor, "compose", compose)
    return seen


@pytest.mark.parametrize(
    ("given", "style"),
    [("paint", "paint"), (" Paint ", "paint"), ("CHARACTER", "character"), ("", "character")],
)
def test_multipart_style_reaches_the_compositor(
    post_multipart: Post,
    astronaut_jpeg: bytes,
    drawn: list[tuple[str, str]],
    given: str,
    style: str,
) -> None:
    response = post_multipart(astronaut_jpeg, animal="fox", style=given)

    assert response.status_code == 200, response.get_json()
    assert drawn == [("fox", style)]


def test_without_a_style_the_character_is_drawn(
    post_multipart: Post, astronaut_jpeg: bytes, drawn: list[tuple[str, str]]
) -> None:
    assert post_multipart(astronaut_jpeg, animal="fox").status_code == 200
    assert drawn == [("fox", "character")]


def test_raw_body_style_in_query(
    client: FlaskClient, astronaut_jpeg: bytes, drawn: list[tuple[str, str]]
) -> None:
    response = client.post(
        "/?animal=cat&style=PAINT", data=astronaut_jpeg, content_type="image/jpeg"
    )

    assert response.status_code == 200, response.get_json()
    assert drawn == [("cat", "paint")]


def test_json_style(
    client: FlaskClient, astronaut_jpeg: bytes, drawn: list[tuple[str, str]]
) -> None:
    assert post_json(client, astronaut_jpeg, animal="bear", style="paint").status_code == 200
    assert post_json(client, astronaut_jpeg, animal="bear", style=None).status_code == 200
    assert drawn == [("bear", "paint"), ("bear", "character")]


@pytest.mark.parametrize("form", ["multipart", "json"])
def test_every_animal_of_a_pack_is_drawn_in_its_style(
    client: FlaskClient,
    post_multipart: Post,
    astronaut_jpeg: bytes,
    drawn: list[tuple[str, str]],
    form: str,
) -> None:
    if form == "json":
        response = post_json(client, astronaut_jpeg, animals=["fox", "cat"], style="paint")
    else:
        response = post_multipart(astronaut_jpeg, animal="", animals="fox,cat", style="paint")

    assert response.status_code == 200, response.get_json()
    assert [result["error"] for result in response.get_json()["results"]] == [None, None]
    assert sorted(drawn) == [("cat", "paint"), ("fox", "paint")]


@pytest.mark.parametrize("style", ["character", "paint"])
def test_the_local_compositor_hands_the_style_to_compose_faces(
    monkeypatch: pytest.MonkeyPatch, astronaut: Image.Image, style: str
) -> None:
    calls: list[tuple[str, object]] = []

    def compose_faces(
        image: Image.Image, faces: object, masks: object, animal: str, **kw: object
    ) -> Image.Image:
        calls.append((animal, kw))
        return image

    monkeypatch.setattr(compositor_module, "compose_faces", compose_faces)
    LocalCompositor().compose(astronaut, [], [], "koala", style=style)

    assert calls == [("koala", {"style": style})]

"""Contract: the API's real outgoing request goes into the real function app, in-process.

Multipart is encoded by the API's httpx client and parsed by functions-framework/Flask; the
function's answer is parsed by the API. Local backends and the real face models run.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from api_testing import BASE_URL, auth, client_for, create_user, photo
from function_stub import upload, upload_pack
from PIL import Image
from sqlalchemy import func, select

from api.animals import CATALOGUE_ORDER
from api.generations.models import GenerationInput
from tests.compositor_recording import record_drawn


async def test_a_selfie_goes_through_the_real_function_and_back(contract_app, db, media_dir):
    async with contract_app() as app, client_for(app) as client:
        user, key = await create_user(client)
        response = await upload(client, key, photo("astronaut"), "panda")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "succeeded"
        assert body["animal"] == "panda"
        assert len(body["faces"]) >= 1
        assert {"box", "confidence"} <= body["faces"][0].keys()
        (stored,) = (media_dir / "avatars" / user["id"]).glob(f"{body['id']}.*")
        assert stored.suffix in (".jpg", ".png")
        # The API signs its own link to what the function stored, and serves it.
        image = await client.get(body["image_url"].removeprefix(BASE_URL))
        assert image.status_code == 200
        assert Image.open(io.BytesIO(image.content)).size[0] > 0
        listed = (await client.get("/v1/generations", headers=auth(key))).json()["items"]
        assert [item["id"] for item in listed] == [body["id"]]
    inputs = (await db.execute(select(func.count()).select_from(GenerationInput))).scalar_one()
    assert inputs == 0


def sideways_photo(name: str) -> tuple[bytes, tuple[int, int]]:
    """A photo stored sideways, as a phone held upright writes it (EXIF Orientation 6), with a
    GPS tag; and the upright size."""
    from skimage import data

    upright = Image.fromarray(getattr(data, name)()).convert("RGB").crop((0, 0, 512, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # the pixels are turned: rotate 90° clockwise to display
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    out = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=92, exif=exif)
    return out.getvalue(), upright.size


async def test_a_sideways_phone_photo_comes_back_upright(contract_app, media_dir):
    image, upright_size = sideways_photo("astronaut")
    async with contract_app() as app, client_for(app) as client:
        user, key = await create_user(client)
        response = await upload(client, key, image, "fox")
        assert response.status_code == 201, response.text
        body = response.json()
    # The API forwarded the pixels as they came with only the orientation tag; the function
    # turned the photo upright before looking for the face (a sideways one finds none).
    assert body["faces"]
    (stored,) = (media_dir / "avatars" / user["id"]).glob(f"{body['id']}.*")
    result = Image.open(stored)
    assert result.size == upright_size == (512, 400)  # stored sideways as 400x512
    assert dict(result.getexif()) == {}
    assert b"GPS" not in stored.read_bytes()


async def test_the_functions_refusal_reaches_the_user_as_its_spec_code(contract_app):
    async with contract_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        response = await upload(client, key, photo("chelsea"), "fox")  # a cat: no human face
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "no_face_detected"
        (item,) = (await client.get("/v1/generations", headers=auth(key))).json()["items"]
        assert item["status"] == "failed"
        assert item["error"]["code"] == "no_face_detected"


async def test_a_pack_of_every_animal_is_one_call_and_a_different_image_each(
    contract_app, media_dir
):
    async with contract_app() as app, client_for(app) as client:
        user, key = await create_user(client)
        response = await upload_pack(client, key, photo("astronaut"), "all")
        assert response.status_code == 201, response.text
        pack = response.json()
        assert pack["status"] == "succeeded"
        generations = pack["generations"]
        assert [g["animal"] for g in generations] == list(CATALOGUE_ORDER)
        assert {g["status"] for g in generations} == {"succeeded"}
        # The face was found once: every record carries the same faces.
        assert all(g["faces"] == generations[0]["faces"] and g["faces"] for g in generations)
        images = {}
        for generation in generations:
            (stored,) = (media_dir / "avatars" / user["id"]).glob(f"{generation['id']}.*")
            images[generation["animal"]] = np.asarray(Image.open(stored).convert("RGB"))
        sizes = {image.shape for image in images.values()}
        assert len(sizes) == 1
        # Each animal is its own drawing: every pair differs, and by more than noise.
        names = list(images)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                diff = np.abs(images[first].astype(int) - images[second].astype(int))
                assert (diff.max(axis=2) > 40).mean() > 0.002, (first, second)
        listed = (await client.get("/v1/generations?limit=50", headers=auth(key))).json()["items"]
        assert {item["pack_id"] for item in listed} == {pack["id"]}
        assert len(listed) == len(CATALOGUE_ORDER)


async def test_the_style_asked_for_is_the_style_the_function_draws(
    contract_app, monkeypatch: pytest.MonkeyPatch
):
    drawn = record_drawn(monkeypatch)
    async with contract_app() as app, client_for(app) as client:
        _, key = await create_user(client)
        one = await upload(client, key, photo("astronaut"), "fox")
        painted = await upload(client, key, photo("astronaut"), "cat", style="paint")
        pack = await upload_pack(client, key, photo("astronaut"), "dog,koala", style="PAINT")
    assert [one.status_code, painted.status_code, pack.status_code] == [201, 201, 201]
    assert (one.json()["style"], painted.json()["style"], pack.json()["style"]) == (
        "character",
        "paint",
        "paint",
    )
    assert drawn == [("fox", "character"), ("cat", "paint"), ("dog", "paint"), ("koala", "paint")]

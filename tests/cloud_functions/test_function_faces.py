"""The real function finds faces in real photographs, and only in those."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from function_testing import (
    Post,
    box_of,
    encode,
    exif_rotated_jpeg,
    landmarks_of,
    load_photo,
    side_by_side,
)
from PIL import Image

FACE_PHOTOS = ["astronaut", "camera", "grace_hopper"]


def assert_plausible_face(face: dict[str, object]) -> None:
    """Eyes above nose above mouth, the subject's right eye on the image's left, all in the box."""
    marks = landmarks_of(face)  # type: ignore[arg-type]
    x0, y0, x1, y1 = box_of(face)  # type: ignore[arg-type]
    eye_y = max(marks["right_eye"][1], marks["left_eye"][1])
    assert eye_y < marks["nose_tip"][1] < marks["mouth_center"][1] < marks["chin"][1]
    assert marks["right_eye"][0] < marks["left_eye"][0]
    assert marks["mouth_right"][0] < marks["mouth_left"][0]
    for name, (x, y) in marks.items():
        assert x0 - 1 <= x <= x1 + 1, name
        assert y0 - 1 <= y <= y1 + 1, name


@pytest.mark.parametrize("name", FACE_PHOTOS)
def test_finds_the_face_in_a_photograph(name: str, post_multipart: Post) -> None:
    response = post_multipart(encode(load_photo(name)), animal="fox")

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["animal"] == "fox"
    assert body["backend"] == "local"
    assert len(body["faces"]) == 1
    assert body["faces"][0]["confidence"] > 0.5
    assert_plausible_face(body["faces"][0])
    assert set(body["timings_ms"]) == {"decode", "detect", "segment", "compose", "store", "total"}


def test_astronaut_eyes_where_they_are(post_multipart: Post, astronaut_jpeg: bytes) -> None:
    face = post_multipart(astronaut_jpeg).get_json()["faces"][0]

    marks = landmarks_of(face)
    assert marks["right_eye"] == pytest.approx((204, 102), abs=8)
    assert marks["left_eye"] == pytest.approx((248, 104), abs=8)


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_no_face_is_422(name: str, post_multipart: Post) -> None:
    response = post_multipart(encode(load_photo(name)))

    assert response.status_code == 422
    assert response.get_json()["error"] == "no_face_detected"


def test_exif_rotated_photo_finds_the_same_face(
    post_multipart: Post, grace_hopper: Image.Image, grace_hopper_jpeg: bytes
) -> None:
    upright = post_multipart(grace_hopper_jpeg).get_json()["faces"][0]
    rotated = post_multipart(exif_rotated_jpeg(grace_hopper)).get_json()["faces"][0]

    assert box_of(rotated) == pytest.approx(box_of(upright), abs=4)
    assert_plausible_face(rotated)


def test_heic_finds_the_same_face(
    post_multipart: Post, grace_hopper: Image.Image, grace_hopper_jpeg: bytes
) -> None:
    upright = post_multipart(grace_hopper_jpeg).get_json()["faces"][0]
    response = post_multipart(encode(grace_hopper, "HEIF", quality=90), filename="selfie.heic")

    assert response.status_code == 200, response.get_json()
    assert box_of(response.get_json()["faces"][0]) == pytest.approx(box_of(upright), abs=4)


def face_change(storage_dir: Path, body: dict[str, object], source: Image.Image) -> list[float]:
    """Mean absolute pixel change inside each reported face box, stored result vs source."""
    stored = Image.open(storage_dir / str(body["object_name"])).convert("RGB")
    assert stored.size == source.size
    before, after = (np.asarray(i, dtype=np.float32) for i in (source, stored))
    changes = []
    for face in body["faces"]:  # type: ignore[attr-defined]
        x0, y0, x1, y1 = (round(v) for v in box_of(face))
        changes.append(float(np.abs(after[y0:y1, x0:x1] - before[y0:y1, x0:x1]).mean()))
    return changes


def test_several_faces_all_reported_largest_composed(
    post_multipart: Post, storage_dir: Path, astronaut: Image.Image, grace_hopper: Image.Image
) -> None:
    group = side_by_side(astronaut, grace_hopper)
    body = post_multipart(encode(group, quality=95)).get_json()

    assert len(body["faces"]) == 2
    boxes = [box_of(f) for f in body["faces"]]
    assert boxes[0][0] > astronaut.width  # the largest (Grace Hopper's) comes first
    assert boxes[1][2] < astronaut.width
    largest_change, other_change = face_change(storage_dir, body, group)
    assert largest_change > 10 > other_change


def test_faces_all_composes_every_face(
    post_multipart: Post, storage_dir: Path, astronaut: Image.Image, grace_hopper: Image.Image
) -> None:
    group = side_by_side(astronaut, grace_hopper)
    body = post_multipart(encode(group, quality=95), faces="all").get_json()

    assert len(body["faces"]) == 2
    assert min(face_change(storage_dir, body, group)) > 10

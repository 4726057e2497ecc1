"""The roll-aligned face crop and the blend back: geometry, and exact pixels outside the mask."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from avatar.backends.gcp.crop import FaceCrop
from avatar.masking import ContourMasker
from tests.cloud_functions.gcp.fakes import face_at


def test_crop_is_square_upright_and_about_the_face_size() -> None:
    face = face_at(100, 120, 150)
    crop = FaceCrop.around(face)
    assert crop.size_px == 300
    assert crop.side == pytest.approx(300)
    image = Image.new("RGB", (500, 500), (0, 0, 0))
    image.paste((255, 0, 0), (170, 190, 180, 200))  # a red mark at the face centre
    cut = np.asarray(crop.extract(image))
    assert cut.shape == (300, 300, 3)
    assert tuple(cut[150, 150]) == (255, 0, 0)


@pytest.mark.parametrize(("size", "roll"), [(200, 30.0), (200, -20.0), (700, 25.0)])
def test_a_rolled_face_is_turned_upright_in_the_crop(size: float, roll: float) -> None:
    face = face_at(150, 150, size, roll=roll)
    crop = FaceCrop.around(face)
    assert crop.size_px == min(1024, round(2 * size))
    image = Image.new("RGB", (1200, 1200), (0, 0, 0))
    # Mark the eyes: in the upright crop the subject's left eye must sit right of centre,
    # level with the right eye, both at the height the box puts them.
    dot = size / 40
    for name, colour in (("left_eye", (0, 255, 0)), ("right_eye", (0, 0, 255))):
        x, y = face.landmarks[name]
        image.paste(colour, (round(x - dot), round(y - dot), round(x + dot), round(y + dot)))
    cut = np.asarray(crop.extract(image)).astype(int)
    green = np.argwhere((cut[..., 1] > 200) & (cut[..., 0] < 50))
    blue = np.argwhere((cut[..., 2] > 200) & (cut[..., 0] < 50))
    (gy, gx), (by, bx) = green.mean(axis=0), blue.mean(axis=0)
    n = crop.size_px
    assert gx == pytest.approx(n / 2 + 0.1 * n, abs=0.01 * n)  # eyes +-0.2 box = +-0.1 crop
    assert bx == pytest.approx(n / 2 - 0.1 * n, abs=0.01 * n)
    assert gy == pytest.approx(by, abs=0.01 * n)
    assert gy == pytest.approx(n / 2 - 0.06 * n, abs=0.01 * n)  # 0.38 of the box: 0.12 above


@pytest.mark.parametrize("roll", [0.0, 17.0, -35.0])
def test_blend_back_changes_nothing_outside_the_mask(astronaut: Image.Image, roll: float) -> None:
    face = face_at(170, 70, 130, roll=roll)
    mask = ContourMasker().face_mask(astronaut, face)
    crop = FaceCrop.around(face)
    generated = Image.new("RGB", (1024, 1024), (0, 0, 255))

    out = crop.blend_back(astronaut, generated, mask)

    before, after, alpha = np.asarray(astronaut), np.asarray(out), np.asarray(mask)
    assert out.size == astronaut.size
    assert out.mode == "RGB"
    assert np.array_equal(after[alpha == 0], before[alpha == 0])
    inner = alpha == 255
    assert inner.sum() > 1000
    assert np.abs(after[inner].astype(int) - (0, 0, 255)).max() <= 2


def test_identity_round_trip_lands_back_in_place(astronaut: Image.Image) -> None:
    face = face_at(170, 70, 130, roll=20)
    mask = ContourMasker().face_mask(astronaut, face)
    crop = FaceCrop.around(face)
    out = crop.blend_back(astronaut, crop.extract(astronaut), mask)
    diff = np.abs(np.asarray(out).astype(int) - np.asarray(astronaut).astype(int))
    inner = np.asarray(mask) == 255
    # Two bilinear resamplings blur a little; a misplaced crop would differ by far more.
    assert diff[inner].mean() < 6

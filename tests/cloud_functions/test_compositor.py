"""The local compositor on real photographs with faces from the real local detector and masker."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from function_testing import Case, detect, load_photo, side_by_side
from PIL import Image, ImageDraw
from scipy import ndimage

from avatar.backends import Backends
from avatar.backends.local.compositor import LocalCompositor
from avatar.catalogue import ANIMAL_IDS, ANIMALS, RENDER_STYLES
from avatar.compose import STYLES, ear_outlines
from avatar.compose.synthetic import synthetic_face, synthetic_mask
from avatar.errors import InvalidRequest
from avatar.faces import Face

BoolArray = npt.NDArray[np.bool_]
PHOTOS = ["astronaut", "grace_hopper", "camera", "two_faces", "no_mesh"]


def photo(name: str) -> Image.Image:
    if name == "two_faces":
        return side_by_side(load_photo("astronaut"), load_photo("grace_hopper"))
    return load_photo(name)


@pytest.fixture(scope="module")
def cases(backends: Backends) -> dict[str, Case]:
    found = {name: detect(backends, photo(name)) for name in PHOTOS if name != "no_mesh"}
    # A face as Cloud Vision would give it: named landmarks and an outline, no mesh.
    astronaut = load_photo("astronaut")
    face = synthetic_face((203.0, 101.0), (247.0, 104.0))
    found["no_mesh"] = (astronaut, [face], [synthetic_mask(astronaut.size, face)])
    return found


def changed(before: Image.Image, after: Image.Image) -> BoolArray:
    diff = np.abs(np.asarray(before, dtype=np.int16) - np.asarray(after, dtype=np.int16))
    return np.asarray(diff.max(axis=2) > 2)


def unit_px(face: Face) -> float:
    (rx, ry), (lx, ly) = face.landmarks["right_eye"], face.landmarks["left_eye"]
    return float(np.hypot(lx - rx, ly - ry))


def near_faces(faces: Sequence[Face], masks: Sequence[Image.Image], animal: str) -> BoolArray:
    """Each face mask grown by half the eyes' distance, the whiskers' reach, the ears."""
    size = masks[0].size
    region = np.zeros((size[1], size[0]), dtype=bool)
    ys, xs = np.mgrid[: size[1], : size[0]]
    for face, mask in zip(faces, masks, strict=True):
        outside = np.asarray(mask) == 0
        region |= ndimage.distance_transform_edt(outside) <= 0.5 * unit_px(face)
        nx, ny = face.landmarks["nose_tip"]
        region |= np.hypot(xs - nx, ys - ny) <= 1.6 * unit_px(face)
        ears = Image.new("L", size, 0)
        for outline in ear_outlines(face, animal):
            ImageDraw.Draw(ears).polygon([(float(x), float(y)) for x, y in outline], fill=255)
        region |= np.asarray(ears) > 0
    return region


def test_catalogue_and_styles_list_the_same_animals() -> None:
    assert set(STYLES) == ANIMAL_IDS
    assert {"cat", "dog", "fox", "bear", "rabbit", "panda", "tiger", "raccoon"} <= ANIMAL_IDS


def test_the_compositor_is_named_local() -> None:
    assert LocalCompositor().name == "local"


@pytest.mark.parametrize("name", PHOTOS)
def test_the_test_photos_have_faces(name: str, cases: dict[str, Case]) -> None:
    _, faces, _ = cases[name]

    assert len(faces) == (2 if name == "two_faces" else 1)


@pytest.mark.parametrize("style", RENDER_STYLES)
@pytest.mark.parametrize("animal", [a.id for a in ANIMALS])
@pytest.mark.parametrize("name", PHOTOS)
def test_every_animal_renders_on_every_face_and_only_near_it(
    name: str, animal: str, style: str, cases: dict[str, Case]
) -> None:
    image, faces, masks = cases[name]

    out = LocalCompositor().compose(image, faces, masks, animal, style)

    assert out.size == image.size
    assert out.mode == "RGB"
    diff = changed(image, out)
    for mask in masks:  # every face got its character
        assert diff[np.asarray(mask) > 128].mean() > 0.3
    near = near_faces(faces, masks, animal)
    assert diff[near].sum() / diff.sum() >= 0.99


@pytest.mark.parametrize("style", RENDER_STYLES)
def test_the_input_image_is_left_untouched(style: str, cases: dict[str, Case]) -> None:
    image, faces, masks = cases["astronaut"]
    before = image.tobytes()

    LocalCompositor().compose(image, faces, masks, "tiger", style)

    assert image.tobytes() == before


@pytest.mark.parametrize("style", RENDER_STYLES)
@pytest.mark.parametrize("animal", ["cat", "panda", "tiger"])
def test_the_same_input_gives_the_same_bytes(
    animal: str, style: str, cases: dict[str, Case]
) -> None:
    image, faces, masks = cases["two_faces"]
    again = (image.copy(), list(faces), [m.copy() for m in masks])

    first = LocalCompositor().compose(image, faces, masks, animal, style)
    second = LocalCompositor().compose(*again, animal, style)

    assert first.tobytes() == second.tobytes()


ROLL_DEG = 20.0  # counter-clockwise: the head's "up" tilts towards the image's left


@pytest.fixture(scope="module")
def rolled(backends: Backends) -> Case:
    photo = load_photo("astronaut").rotate(
        ROLL_DEG, Image.Resampling.BICUBIC, expand=True, fillcolor=(200, 200, 200)
    )
    image, faces, masks = detect(backends, photo)
    assert len(faces) == 1
    assert abs(abs(faces[0].roll_deg) - ROLL_DEG) < 6
    return image, faces, masks


def rolled_axes() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The photo's own up-axis and left-to-right axis after the rotation, in image coordinates."""
    a = np.radians(ROLL_DEG)
    return np.array([-np.sin(a), -np.cos(a)]), np.array([np.cos(a), -np.sin(a)])


@pytest.mark.parametrize("style", RENDER_STYLES)
@pytest.mark.parametrize("animal", [a.id for a in ANIMALS if a.id != "dog"])
def test_ears_stay_on_the_head_of_a_rolled_face(animal: str, style: str, rolled: Case) -> None:
    image, faces, masks = rolled
    face, u = faces[0], unit_px(faces[0])

    out = LocalCompositor().compose(image, faces, masks, animal, style)

    # Changes away from the face and muzzle are the ears: measured in the photo's own rotated axes.
    face_zone = ndimage.distance_transform_edt(np.asarray(masks[0]) == 0) <= 0.5 * u
    ys, xs = np.nonzero(changed(image, out) & ~face_zone & ~muzzle_zone(face, image.size))
    eyes = np.mean([face.landmarks["right_eye"], face.landmarks["left_eye"]], axis=0)
    up, across = rolled_axes()
    rel = np.stack([xs, ys], axis=1) - eyes
    height, side = rel @ up / u, rel @ across / u
    assert (side < -0.3).sum() > 100
    assert (side > 0.3).sum() > 100
    # Both ears at the same height along the tilted up-axis (they turned with the head), on top.
    assert abs(height[side < 0].mean() - height[side > 0].mean()) < 0.25
    assert (height > 0.8).mean() > 0.9


def test_floppy_ears_hang_level_on_a_rolled_face(rolled: Case) -> None:
    _, faces, _ = rolled
    face, u = faces[0], unit_px(faces[0])
    eyes = np.mean([face.landmarks["right_eye"], face.landmarks["left_eye"]], axis=0)
    up, across = rolled_axes()

    right, left = (outline.mean(axis=0) - eyes for outline in ear_outlines(face, "dog"))

    assert right @ across < -u
    assert left @ across > u
    assert abs(right @ up - left @ up) < 0.15 * u  # level along the tilted up-axis


def muzzle_zone(face: Face, size: tuple[int, int]) -> BoolArray:
    ys, xs = np.mgrid[: size[1], : size[0]]
    nx, ny = face.landmarks["nose_tip"]
    return np.asarray(np.hypot(xs - nx, ys - ny) <= 1.6 * unit_px(face))


@pytest.mark.parametrize("style", RENDER_STYLES)
@pytest.mark.parametrize("animal", [a.id for a in ANIMALS])
def test_a_face_cut_by_the_image_border_renders(
    animal: str, style: str, cases: dict[str, Case]
) -> None:
    image, faces, masks = cases["astronaut"]
    dx, dy = 190, 70  # the crop cuts through the forehead and the left cheek
    cropped = image.crop((dx, dy, dx + 200, dy + 200))
    moved = [shifted(f, -dx, -dy) for f in faces]
    moved_masks = [m.crop((dx, dy, dx + 200, dy + 200)) for m in masks]

    out = LocalCompositor().compose(cropped, moved, moved_masks, animal, style)

    assert out.size == cropped.size
    assert changed(cropped, out).any()


def shifted(face: Face, dx: float, dy: float) -> Face:
    marks = {k: (x + dx, y + dy) for k, (x, y) in face.landmarks.items()}
    box = dataclasses.replace(face.box, x=face.box.x + dx, y=face.box.y + dy)
    contour = face.contour + np.array([dx, dy], dtype=np.float32)
    mesh = None if face.mesh is None else face.mesh + np.array([dx, dy, 0.0], dtype=np.float32)
    return dataclasses.replace(face, box=box, landmarks=marks, contour=contour, mesh=mesh)


@pytest.mark.parametrize("style", RENDER_STYLES)
def test_a_face_mostly_off_the_image_renders(style: str, cases: dict[str, Case]) -> None:
    image, faces, _masks = cases["astronaut"]
    moved = [shifted(f, -230, -120) for f in faces]
    blank = Image.new("L", image.size, 0)

    out = LocalCompositor().compose(image, moved, [blank], "rabbit", style)

    assert out.size == image.size


@pytest.mark.parametrize("animal", ["unicorn", "", "cat "])
def test_an_unknown_animal_is_an_invalid_request(animal: str, cases: dict[str, Case]) -> None:
    image, faces, masks = cases["astronaut"]
    if animal == "cat ":  # ids are matched like the catalogue does: trimmed, any case
        assert LocalCompositor().compose(image, faces, masks, "Cat ").size == image.size
        return

    with pytest.raises(InvalidRequest) as info:
        LocalCompositor().compose(image, faces, masks, animal)

    assert info.value.status == 400
    assert info.value.code == "invalid_request"


def test_faces_and_masks_must_pair_up(cases: dict[str, Case]) -> None:
    image, faces, _ = cases["astronaut"]

    with pytest.raises(InvalidRequest):
        LocalCompositor().compose(image, faces, [], "cat")


def test_no_faces_gives_an_equal_copy(cases: dict[str, Case]) -> None:
    image, _, _ = cases["astronaut"]

    out = LocalCompositor().compose(image, [], [], "cat")

    assert out is not image
    assert out.tobytes() == image.tobytes()


@pytest.mark.parametrize("animal", [a.id for a in ANIMALS])
def test_paint_changes_the_eyes_and_mouth_less_than_the_rest_of_the_face(
    animal: str, cases: dict[str, Case]
) -> None:
    image, faces, masks = cases["grace_hopper"]
    face = faces[0]
    out = LocalCompositor().compose(image, faces, masks, animal, "paint")
    diff = np.abs(np.asarray(image, dtype=np.float32) - np.asarray(out, dtype=np.float32)).mean(
        axis=2
    )

    def mean_change(point: tuple[float, float], radius: float) -> float:
        x, y = int(point[0]), int(point[1])
        r = max(int(radius), 1)
        return float(diff[y - r : y + r, x - r : x + r].mean())

    u = unit_px(face)
    fur = float(diff[np.asarray(masks[0]) > 200].mean())
    for eye in ("right_eye", "left_eye"):
        assert mean_change(face.landmarks[eye], 0.08 * u) < 0.6 * fur
    if not STYLES[animal].teeth:  # the rabbit's buck teeth sit on the upper lip
        assert mean_change(face.landmarks["mouth_center"], 0.08 * u) < 0.6 * fur


@pytest.mark.parametrize("style", RENDER_STYLES)
@pytest.mark.parametrize("animal", ["cat", "koala"])
def test_a_face_without_an_outline_or_with_coincident_eyes_renders(
    animal: str, style: str, cases: dict[str, Case]
) -> None:
    image, faces, masks = cases["no_mesh"]
    bare = dataclasses.replace(faces[0], contour=np.zeros((0, 2), dtype=np.float32))
    eye = bare.landmarks["right_eye"]
    squeezed = dataclasses.replace(bare, landmarks={**bare.landmarks, "left_eye": eye})

    for face in (bare, squeezed):
        out = LocalCompositor().compose(image, [face], masks, animal, style)
        assert changed(image, out)[np.asarray(masks[0]) > 128].mean() > 0.3


@pytest.mark.parametrize("style", RENDER_STYLES)
def test_a_tiny_face_renders_near_itself(style: str, cases: dict[str, Case]) -> None:
    image, _, _ = cases["no_mesh"]
    face = synthetic_face((100.0, 400.0), (106.0, 400.0))  # six pixels between the eyes
    mask = synthetic_mask(image.size, face)

    out = LocalCompositor().compose(image, [face], [mask], "rabbit", style)

    ys, xs = np.nonzero(changed(image, out))
    assert len(xs) > 20
    assert 80 < xs.min() <= xs.max() < 126
    assert 360 < ys.min() <= ys.max() < 420


@pytest.mark.parametrize("style", RENDER_STYLES)
def test_a_grey_image_comes_back_rgb(style: str, cases: dict[str, Case]) -> None:
    image, faces, masks = cases["astronaut"]

    out = LocalCompositor().compose(image.convert("L"), faces, masks, "panda", style)

    assert out.mode == "RGB"
    assert out.size == image.size

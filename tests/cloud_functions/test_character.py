"""The `character` style: an animal head drawn in place of the face, posed and animated by it.

Measures used below:
- *replaced*: inside the face oval (where the face mask is full), the share of pixels whose colour
  moved by more than 24 of 255 in some channel, and the correlation of the photo's fine detail
  (luminance minus a 3 px blur) before and after: a replaced face keeps none of its pores, lines
  or features (the `paint` style keeps them on purpose, at 0.56-0.92).
- *unchanged outside*: every pixel farther than 2 px from the face mask and the ears' outlines.
- eyes and mouth are found by their drawn colours (an animal's iris, the open mouth's inside),
  which appear nowhere else in the head.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest
from function_testing import Case, detect, load_photo, side_by_side
from PIL import Image, ImageDraw
from scipy import ndimage

from avatar.backends import Backends
from avatar.catalogue import ANIMAL_IDS
from avatar.compose import STYLES, compose_faces, ear_outlines
from avatar.compose.character import MOUTH_INSIDE
from avatar.compose.geometry import face_frame
from avatar.compose.pose import Pose, pose_of
from avatar.compose.synthetic import synthetic_face, synthetic_mask, with_expression
from avatar.errors import InvalidRequest
from avatar.faces import Face

BoolArray = npt.NDArray[np.bool_]
ANIMALS = sorted(ANIMAL_IDS)
ROLL_DEG = 20.0


@pytest.fixture(scope="module")
def photos(backends: Backends) -> dict[str, Case]:
    found = {name: detect(backends, load_photo(name)) for name in ("astronaut", "grace_hopper")}
    pair = side_by_side(load_photo("astronaut"), load_photo("grace_hopper"))
    found["two_faces"] = detect(backends, pair)
    rolled = load_photo("astronaut").rotate(
        ROLL_DEG, Image.Resampling.BICUBIC, expand=True, fillcolor=(200, 200, 200)
    )
    found["rolled"] = detect(backends, rolled)
    return found


def pixels(image: Image.Image) -> npt.NDArray[np.int16]:
    return np.asarray(image, dtype=np.int16)


def coloured(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 8) -> BoolArray:
    """Pixels within `tolerance` of a drawn colour in every channel."""
    return np.asarray(np.abs(pixels(image) - np.array(colour)).max(axis=2) <= tolerance)


def detail(image: Image.Image) -> npt.NDArray[np.float32]:
    luma = np.asarray(image.convert("L"), dtype=np.float32)
    return np.asarray(luma - ndimage.gaussian_filter(luma, 3), dtype=np.float32)


def face_and_ears(face: Face, mask: Image.Image, animal: str) -> BoolArray:
    """The face mask and the ears' outlines, grown by 2 px."""
    ears = Image.new("L", mask.size, 0)
    for outline in ear_outlines(face, animal):
        ImageDraw.Draw(ears).polygon([(float(x), float(y)) for x, y in outline], fill=255)
    region = (np.asarray(mask) > 0) | (np.asarray(ears) > 0)
    return np.asarray(ndimage.binary_dilation(region, iterations=2))


@pytest.mark.parametrize("animal", ANIMALS)
@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_the_face_oval_is_replaced_and_nothing_outside_the_face_and_ears_changes(
    name: str, animal: str, photos: dict[str, Case]
) -> None:
    image, faces, masks = photos[name]
    out = compose_faces(image, faces, masks, animal)

    core = np.asarray(masks[0]) >= 250
    moved = np.abs(pixels(out) - pixels(image)).max(axis=2)
    assert core.sum() > 3000
    assert (moved[core] > 24).mean() >= 0.85  # measured: 0.88-0.996
    kept = np.corrcoef(detail(image)[core], detail(out)[core])[0, 1]
    assert kept < 0.2  # measured: -0.02-0.11; the paint style keeps 0.56-0.92
    outside = ~face_and_ears(faces[0], masks[0], animal)
    assert moved[outside].max() <= 2


@pytest.mark.parametrize("animal", ["cat", "rabbit"])
def test_paint_keeps_the_face_and_character_replaces_it(
    animal: str, photos: dict[str, Case]
) -> None:
    image, faces, masks = photos["grace_hopper"]
    core = np.asarray(masks[0]) >= 250

    kept = {
        style: np.corrcoef(
            detail(image)[core], detail(compose_faces(image, faces, masks, animal, style))[core]
        )[0, 1]
        for style in ("paint", "character")
    }

    assert kept["paint"] > 0.5
    assert kept["character"] < 0.2


def test_character_is_the_default_and_an_unknown_style_is_an_invalid_request(
    photos: dict[str, Case],
) -> None:
    image, faces, masks = photos["astronaut"]

    default = compose_faces(image, faces, masks, "fox")

    assert default.tobytes() == compose_faces(image, faces, masks, "fox", "character").tobytes()
    assert default.tobytes() != compose_faces(image, faces, masks, "fox", "paint").tobytes()
    with pytest.raises(InvalidRequest, match="style"):
        compose_faces(image, faces, masks, "fox", "sketch")


def eye_line_deg(
    out: Image.Image, face: Face, mask: Image.Image, iris: tuple[int, int, int]
) -> float:
    """The angle (degrees, y down) from the drawn right eye's iris to the left eye's."""
    found = coloured(out, iris, 6) & (np.asarray(mask) > 128)
    ys, xs = np.nonzero(found)
    frame = face_frame(face)
    across = (np.stack([xs, ys], axis=1) - frame.origin) @ frame.axis_x
    right = np.array([xs[across < 0].mean(), ys[across < 0].mean()])
    left = np.array([xs[across > 0].mean(), ys[across > 0].mean()])
    assert min((across < 0).sum(), (across > 0).sum()) > 20  # both eyes were drawn
    dx, dy = left - right
    return float(np.degrees(np.arctan2(dy, dx)))


@pytest.mark.parametrize("animal", ANIMALS)
def test_the_head_rolls_with_the_face(animal: str, photos: dict[str, Case]) -> None:
    image, faces, masks = photos["astronaut"]
    r_image, r_faces, r_masks = photos["rolled"]
    iris = STYLES[animal].iris
    upright = compose_faces(image, faces, masks, animal)
    rolled = compose_faces(r_image, r_faces, r_masks, animal)

    # The drawn eyes' line turns by the photo's rotation (Image.rotate turns counter-clockwise).
    turned = eye_line_deg(upright, faces[0], masks[0], iris) - eye_line_deg(
        rolled, r_faces[0], r_masks[0], iris
    )
    assert abs(turned - ROLL_DEG) < 4
    # And the whole head is the upright one turned: the rolled result is the upright result
    # rotated, up to resampling and the detector's few pixels of difference.
    expected = upright.rotate(
        ROLL_DEG, Image.Resampling.BICUBIC, expand=True, fillcolor=(200, 200, 200)
    )
    head = np.asarray(ndimage.binary_erosion(np.asarray(r_masks[0]) > 200, iterations=3))
    error = np.abs(pixels(rolled) - pixels(expected)).mean(axis=2)[head].mean()
    replaced = np.abs(pixels(rolled) - pixels(r_image)).mean(axis=2)[head].mean()
    assert error < 0.35 * replaced


@pytest.fixture(scope="module")
def grey_face() -> tuple[Image.Image, Face, Image.Image]:
    """A synthetic face on a plain grey picture, 80 px between the eyes."""
    image = Image.new("RGB", (400, 420), (128, 128, 128))
    face = synthetic_face((160.0, 170.0), (240.0, 170.0))
    return image, face, synthetic_mask(image.size, face)


def eye_pixels(out: Image.Image, face: Face, animal: str) -> tuple[int, int]:
    """How many pixels of each drawn eye (image left, image right) show the animal's iris.

    Counted within 0.3 eye distances of the eye (24 px), and only where a pixel's neighbours
    show it too: an outline's anti-aliased edge may pass through the iris's colour.
    """
    found = ndimage.binary_erosion(coloured(out, STYLES[animal].iris, 6))
    counts = []
    for eye in ("right_eye", "left_eye"):
        x, y = (round(v) for v in face.landmarks[eye])
        counts.append(int(found[y - 24 : y + 24, x - 24 : x + 24].sum()))
    return counts[0], counts[1]


@pytest.mark.parametrize("animal", ANIMALS)
def test_closed_eyes_in_the_mesh_draw_closed_eyes(
    animal: str, grey_face: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = grey_face

    drawn = {
        lids: eye_pixels(
            compose_faces(image, [with_expression(face, eyes=lids)], [mask], animal), face, animal
        )
        for lids in (0.3, 0.17, 0.02)
    }

    open_, half, closed = drawn[0.3], drawn[0.17], drawn[0.02]
    assert min(open_) > 300  # two round eyes, with iris
    assert closed == (0, 0)  # shut: a lash line, no iris
    assert 0 < half[0] < open_[0]
    assert 0 < half[1] < open_[1]


def test_one_eye_can_wink(grey_face: tuple[Image.Image, Face, Image.Image]) -> None:
    image, face, mask = grey_face
    winking = with_expression(face, eyes=0.3)
    assert winking.mesh is not None
    mesh = winking.mesh.copy()
    mesh[386, :2] = mesh[374, :2] = (mesh[386, :2] + mesh[374, :2]) / 2  # the left lids meet

    out = compose_faces(image, [dataclasses.replace(winking, mesh=mesh)], [mask], "cat")

    right, left = eye_pixels(out, face, "cat")
    assert right > 300
    assert left == 0


@pytest.mark.parametrize("animal", ANIMALS)
def test_the_mouth_opens_with_the_persons(
    animal: str, grey_face: tuple[Image.Image, Face, Image.Image]
) -> None:
    image, face, mask = grey_face

    inside = {
        lips: int(
            coloured(
                compose_faces(image, [with_expression(face, mouth=lips)], [mask], animal),
                MOUTH_INSIDE,
            ).sum()
        )
        for lips in (0.0, 0.2, 0.5)
    }

    assert inside[0.0] == 0  # closed: the mouth is a line
    assert 0 < inside[0.2] < inside[0.5]


def test_a_turned_head_narrows_the_far_eye(
    grey_face: tuple[Image.Image, Face, Image.Image],
) -> None:
    image, face, mask = grey_face
    x, y = face.landmarks["nose_tip"]
    turned = dataclasses.replace(
        face, landmarks={**face.landmarks, "nose_tip": (x + 28.0, y)}
    )  # the nose points to the image's right: that eye is the far one

    assert pose_of(turned, face_frame(turned)).turn > 0.2
    near, far = eye_pixels(compose_faces(image, [turned], [mask], "tiger"), face, "tiger")
    frontal = eye_pixels(compose_faces(image, [face], [mask], "tiger"), face, "tiger")
    assert far < 0.8 * near
    assert abs(frontal[0] - frontal[1]) < 0.1 * frontal[0]


@pytest.mark.parametrize("animal", ["cat", "panda", "koala"])
def test_two_faces_give_two_heads(animal: str, photos: dict[str, Case]) -> None:
    image, faces, masks = photos["two_faces"]
    assert len(faces) == 2

    out = compose_faces(image, faces, masks, animal)

    moved = np.abs(pixels(out) - pixels(image)).max(axis=2) > 24
    iris = coloured(out, STYLES[animal].iris, 6)
    for face, mask in zip(faces, masks, strict=True):
        core = np.asarray(mask) >= 250
        assert moved[core].mean() > 0.85
        frame = face_frame(face)
        ys, xs = np.nonzero(iris & core)
        across = (np.stack([xs, ys], axis=1) - frame.origin) @ frame.axis_x
        assert (across < 0).sum() > 20  # each head has both its eyes
        assert (across > 0).sum() > 20
    # Nothing between the two heads changed.
    both = face_and_ears(faces[0], masks[0], animal) | face_and_ears(faces[1], masks[1], animal)
    assert not moved[~both].any()


def test_the_pose_of_real_faces(photos: dict[str, Case]) -> None:
    _, (astronaut,), _ = photos["astronaut"]
    _, (hopper,), _ = photos["grace_hopper"]

    smiling, closed = pose_of(astronaut, face_frame(astronaut)), pose_of(hopper, face_frame(hopper))

    assert min(smiling.right_eye, smiling.left_eye, closed.right_eye, closed.left_eye) == 1.0
    assert 0.1 < smiling.mouth < 0.5  # she smiles with her teeth showing
    assert closed.mouth == 0.0
    assert abs(smiling.turn) < 0.1
    assert abs(closed.turn) < 0.1


def test_a_face_without_a_mesh_looks_ahead_with_open_eyes() -> None:
    face = synthetic_face((160.0, 170.0), (240.0, 170.0))

    pose = pose_of(face, face_frame(face))

    assert pose == Pose(turn=pose.turn, scale=pose.scale)
    assert abs(pose.turn) < 0.05

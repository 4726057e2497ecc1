"""A pack's animals share the face's preparation: every animal stays bit-identical to drawing it
alone on fresh objects, whatever the order, the threads, or what was drawn before."""

from __future__ import annotations

import dataclasses
import gc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pytest
from function_testing import Case, detect, load_photo, side_by_side

from avatar.backends import Backends
from avatar.backends.local.compositor import LocalCompositor
from avatar.catalogue import ANIMALS, DEFAULT_STYLE, RENDER_STYLES
from avatar.compose import compose_face
from avatar.compose.geometry import cubic, ellipse, face_frame
from avatar.compose.prepared import PREPARED
from avatar.compose.raster import offset_polygon, stroke

EVERY_ANIMAL = [a.id for a in ANIMALS]


@pytest.fixture(scope="module")
def astronaut(backends: Backends) -> Case:
    return detect(backends, load_photo("astronaut"))


@pytest.fixture(scope="module")
def two_faces(backends: Backends) -> Case:
    return detect(backends, side_by_side(load_photo("astronaut"), load_photo("grace_hopper")))


def fresh(case: Case, animal: str, style: str = DEFAULT_STYLE) -> bytes:
    """The animal drawn on copies of every object: nothing kept from earlier calls applies."""
    image, faces, masks = case
    copies = [dataclasses.replace(f) for f in faces]
    mask_copies = [m.copy() for m in masks]
    return LocalCompositor().compose(image.copy(), copies, mask_copies, animal, style).tobytes()


def pack(case: Case, animals: list[str], style: str = DEFAULT_STYLE) -> dict[str, bytes]:
    """The animals one after another over the very same image, face and mask objects."""
    image, faces, masks = case
    compositor = LocalCompositor()
    return {a: compositor.compose(image, faces, masks, a, style).tobytes() for a in animals}


@pytest.mark.parametrize("style", RENDER_STYLES)
@pytest.mark.parametrize("case_name", ["astronaut", "two_faces"])
def test_a_pack_in_any_order_is_each_animal_drawn_alone(
    case_name: str, style: str, request: pytest.FixtureRequest
) -> None:
    case: Case = request.getfixturevalue(case_name)
    alone = {a: fresh(case, a, style) for a in EVERY_ANIMAL}

    forwards = pack(case, EVERY_ANIMAL, style)
    backwards = pack(case, EVERY_ANIMAL[::-1], style)
    again = pack(case, EVERY_ANIMAL[3:] + EVERY_ANIMAL[:3], style)

    for animal in EVERY_ANIMAL:
        assert forwards[animal] == alone[animal], animal
        assert backwards[animal] == alone[animal], animal
        assert again[animal] == alone[animal], animal


def test_a_pack_on_threads_is_each_animal_drawn_alone(astronaut: Case) -> None:
    image, faces, masks = astronaut
    alone = {a: fresh(astronaut, a) for a in EVERY_ANIMAL}
    shared_faces, shared_masks = list(faces), [m.copy() for m in masks]  # not prepared yet
    compositor = LocalCompositor()

    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(
            pool.map(
                lambda a: compositor.compose(image, shared_faces, shared_masks, a).tobytes(),
                EVERY_ANIMAL * 3,
            )
        )

    for animal, out in zip(EVERY_ANIMAL * 3, outs, strict=True):
        assert out == alone[animal], animal


def test_compose_face_matches_the_compositor(astronaut: Case) -> None:
    image, faces, masks = astronaut

    for animal in ("cat", "tiger"):
        assert compose_face(image, faces[0], masks[0], animal).tobytes() == fresh(astronaut, animal)


def test_the_same_mask_with_another_face_is_prepared_afresh(astronaut: Case) -> None:
    image, faces, masks = astronaut
    landmarks = {k: (x + 6.0, y + 4.0) for k, (x, y) in faces[0].landmarks.items()}
    moved = dataclasses.replace(faces[0], landmarks=landmarks)
    compositor = LocalCompositor()

    compositor.compose(image, faces, masks, "fox")
    out = compositor.compose(image, [moved], masks, "fox").tobytes()

    assert out == fresh((image, [moved], masks), "fox")
    assert out != fresh(astronaut, "fox")


def test_a_grey_image_and_a_non_l_mask_are_the_same_from_the_cache(astronaut: Case) -> None:
    image, faces, masks = astronaut
    grey, rgb_masks = image.convert("L"), [m.convert("RGB") for m in masks]

    first = pack((grey, faces, rgb_masks), ["panda", "koala"])
    second = pack((grey, faces, rgb_masks), ["koala", "panda"])

    assert first == second
    assert first["panda"] == fresh((grey, faces, masks), "panda")


def test_what_is_kept_goes_with_the_mask(astronaut: Case) -> None:
    image, faces, masks = astronaut
    gc.collect()
    before = len(PREPARED)
    copies = [m.copy() for m in masks]

    LocalCompositor().compose(image, faces, copies, "cat")
    assert len(PREPARED) == before + len(copies)
    del copies
    gc.collect()

    assert len(PREPARED) == before


# The shape helpers skip numpy's per-call overhead; their arithmetic must stay exactly numpy's.

FloatArray = npt.NDArray[np.float64]


def test_cubic_and_ellipse_are_exactly_the_textbook_formulas() -> None:
    p = [np.array(v, dtype=np.float64) for v in ((0.1, 0.2), (0.7, -0.3), (1.3, 0.9), (2.0, 0.1))]
    for n in (10, 12, 16):
        t = np.linspace(0.0, 1.0, n)[:, None]
        a, b, c, d = p
        want = (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d
        assert cubic(*p, n=n).tobytes() == want.tobytes()
    t = np.linspace(0.0, 2 * np.pi, 20, endpoint=False)
    want = np.stack([0.3 * np.cos(t), 0.2 * np.sin(t)], axis=1) + np.array([0.5, -0.1])
    assert ellipse(0.5, -0.1, 0.3, 0.2, n=20).tobytes() == want.tobytes()


def test_stroke_and_offset_polygon_are_exactly_numpys(astronaut: Case) -> None:
    points = cubic((0.0, 0.0), (0.4, -0.2), (0.8, 0.5), (1.2, 0.1), n=10)
    d = np.gradient(points, axis=0)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / (np.hypot(d[:, 0], d[:, 1])[:, None] + 1e-9)
    half = np.linspace(0.1, 0.02, len(points))[:, None] / 2
    want = np.concatenate([points + normal * half, (points - normal * half)[::-1]])
    assert stroke(points, 0.1, 0.02).tobytes() == want.tobytes()

    polygon = ellipse(0.2, 0.1, 0.5, 0.3, 12.0, n=24)
    d = np.roll(polygon, -1, axis=0) - np.roll(polygon, 1, axis=0)
    normal = np.stack([d[:, 1], -d[:, 0]], axis=1) / (np.hypot(d[:, 0], d[:, 1])[:, None] + 1e-9)
    for distance in (0.03, -0.03):
        assert (
            offset_polygon(polygon, distance).tobytes() == (polygon + normal * distance).tobytes()
        )

    frame = face_frame(astronaut[1][0])
    want = (
        frame.origin
        + (np.outer(polygon[:, 0], frame.axis_x) + np.outer(polygon[:, 1], frame.axis_y))
        * frame.unit
    )
    assert frame.to_image(polygon).tobytes() == want.tobytes()

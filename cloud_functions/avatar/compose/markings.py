"""Fur markings: soft shapes painted into the fur layer (stripes, patches, masks, light cheeks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avatar.compose.animals import RGB, Style
from avatar.compose.geometry import FaceFrame, FloatArray, cubic, ellipse, mirror, path
from avatar.compose.raster import stroke

_WHITE: RGB = (255, 255, 255)


@dataclass(frozen=True)
class Marking:
    """Polygons (face units) painted in one colour at one opacity, blurred by `blur` units."""

    shapes: tuple[FloatArray, ...]
    color: RGB
    opacity: float
    blur: float


def _both(shape: FloatArray) -> tuple[FloatArray, FloatArray]:
    return shape, mirror(shape)


def _muzzle_pads(frame: FaceFrame, style: Style) -> list[Marking]:
    nx, ny = frame.nose
    pads = (ellipse(nx - 0.19, ny + 0.22, 0.25, 0.19), ellipse(nx + 0.19, ny + 0.22, 0.25, 0.19))
    chin = ellipse(frame.mouth[0], (frame.mouth[1] + frame.chin) / 2 + 0.05, 0.32, 0.22)
    return [Marking(pads, style.fur_light, 0.8, 0.07), Marking((chin,), style.fur_light, 0.5, 0.12)]


def _muzzle_light(frame: FaceFrame, style: Style) -> list[Marking]:
    nx, ny = frame.nose
    my = frame.mouth[1]
    muzzle = ellipse((nx + frame.mouth[0]) / 2, (ny + my) / 2 + 0.05, 0.55, (my - ny) / 2 + 0.42)
    return [Marking((muzzle,), style.fur_light, 0.75, 0.12)]


def _tabby(frame: FaceFrame, style: Style) -> list[Marking]:
    t = frame.top
    forehead = tuple(
        stroke(
            cubic((x, t + 0.12), (x * 1.1, t + 0.3), (x * 0.9, t + 0.5), (x * 0.7, t + 0.68), 10),
            0.1,
            0.02,
        )
        for x in (-0.32, 0.0, 0.32)
    )
    hw = frame.half_width
    cheeks = tuple(
        s
        for y in (0.55, 0.8)
        for s in _both(
            stroke(
                cubic(
                    (hw * 1.02, y),
                    (hw * 0.85, y - 0.03),
                    (hw * 0.75, y + 0.02),
                    (hw * 0.6, y + 0.06),
                    10,
                ),
                0.1,
                0.02,
            )
        )
    )
    return [Marking(forehead + cheeks, style.dark, 0.5, 0.03)]


def _tiger_stripes(frame: FaceFrame, style: Style) -> list[Marking]:
    t, hw = frame.top, frame.half_width
    forehead = [
        stroke(
            cubic((0, t + 0.05), (0.02, t + 0.25), (-0.02, t + 0.45), (0, t + 0.62), 10), 0.16, 0.02
        )
    ]
    for x in (0.3, 0.55):
        forehead += _both(
            stroke(
                cubic(
                    (x, t + 0.08),
                    (x * 1.05, t + 0.22),
                    (x * 0.95, t + 0.35),
                    (x * 0.85, t + 0.48),
                    10,
                ),
                0.13,
                0.02,
            )
        )
    cheeks: list[FloatArray] = []
    for y, reach in ((0.35, 0.62), (0.68, 0.55), (1.0, 0.5)):
        cheeks += _both(
            stroke(
                cubic(
                    (hw * 1.05, y),
                    (hw * 0.85, y - 0.05),
                    (hw * 0.7, y + 0.02),
                    (hw * (1.05 - reach), y + 0.08),
                    10,
                ),
                0.16,
                0.02,
            )
        )
    return [Marking(tuple(forehead + cheeks), style.dark, 0.85, 0.02)]


def _brow_white(frame: FaceFrame, style: Style) -> list[Marking]:
    return [Marking(_both(ellipse(0.5, -0.32, 0.2, 0.09, -10.0)), _WHITE, 0.7, 0.05)]


def _panda_patches(frame: FaceFrame, style: Style) -> list[Marking]:
    # A teardrop drooping outwards and down from each eye, as on a real panda.
    half = path(
        cubic((0.2, -0.12), (0.45, -0.3), (0.85, -0.2), (0.92, 0.12)),
        cubic((0.92, 0.12), (0.98, 0.45), (0.75, 0.5), (0.55, 0.38)),
        cubic((0.55, 0.38), (0.35, 0.28), (0.1, 0.15), (0.2, -0.12)),
    )
    return [Marking(_both(half), style.dark, 0.95, 0.035)]


def _eye_patch(frame: FaceFrame, style: Style) -> list[Marking]:
    patch = ellipse(0.56, -0.06, 0.44, 0.36, -12.0)
    return [Marking((patch,), style.dark, 0.6, 0.1)]


def _raccoon_mask(frame: FaceFrame, style: Style) -> list[Marking]:
    hw = frame.half_width
    half = path(
        cubic((0.0, -0.05), (0.25, -0.25), (0.7, -0.28), (hw * 1.05, -0.12)),
        cubic((hw * 1.05, -0.12), (hw * 1.1, 0.1), (hw, 0.3), (0.65, 0.36)),
        cubic((0.65, 0.36), (0.35, 0.38), (0.2, 0.25), (0.0, 0.18)),
    )
    mask = np.concatenate([half, mirror(half)])
    brows = _both(ellipse(0.48, -0.42, 0.26, 0.09, -6.0))
    return [Marking((mask,), style.dark, 0.9, 0.04), Marking(brows, style.fur_light, 0.75, 0.05)]


def _fox_cheeks(frame: FaceFrame, style: Style) -> list[Marking]:
    hw, my = frame.half_width, frame.mouth[1]
    lower = path(
        cubic(
            (-hw * 1.1, 0.45),
            (-0.6, 0.35),
            (-0.3, frame.nose[1] - 0.05),
            (0.0, frame.nose[1] - 0.05),
        ),
        cubic(
            (0.0, frame.nose[1] - 0.05), (0.3, frame.nose[1] - 0.05), (0.6, 0.35), (hw * 1.1, 0.45)
        ),
        cubic((hw * 1.1, 0.45), (hw * 1.1, my + 0.8), (-hw * 1.1, my + 0.8), (-hw * 1.1, 0.45)),
    )
    return [Marking((lower,), style.fur_light, 0.8, 0.1)]


def _blush(frame: FaceFrame, style: Style) -> list[Marking]:
    return [Marking(_both(ellipse(0.68, 0.72, 0.2, 0.12)), (246, 150, 160), 0.45, 0.08)]


MARKINGS: dict[str, Callable[[FaceFrame, Style], list[Marking]]] = {
    "muzzle_pads": _muzzle_pads,
    "muzzle_light": _muzzle_light,
    "tabby": _tabby,
    "tiger_stripes": _tiger_stripes,
    "brow_white": _brow_white,
    "panda_patches": _panda_patches,
    "eye_patch": _eye_patch,
    "raccoon_mask": _raccoon_mask,
    "fox_cheeks": _fox_cheeks,
    "blush": _blush,
}


def markings_for(frame: FaceFrame, style: Style) -> list[Marking]:
    """Every marking of a style, in painting order."""
    return [m for name in style.markings for m in MARKINGS[name](frame, style)]


def keep_clear(frame: FaceFrame) -> list[Marking]:
    """Eyes and mouth, where the fur thins so the expression stays (opacity = how clear)."""
    eyes = (ellipse(-0.5, 0.0, 0.25, 0.14), ellipse(0.5, 0.0, 0.25, 0.14))
    mouth = ellipse(frame.mouth[0], frame.mouth[1] + 0.02, frame.mouth_half + 0.08, 0.2)
    return [Marking(eyes, _WHITE, 0.88, 0.06), Marking((mouth,), _WHITE, 0.9, 0.06)]

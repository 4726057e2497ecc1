"""Crisp face features drawn over the fur: nose, philtrum, whiskers, teeth."""

from __future__ import annotations

import numpy as np

from avatar.compose.animals import Style
from avatar.compose.geometry import FaceFrame, FloatArray, cubic, ellipse, path, transform
from avatar.compose.raster import Sketch

# Nose outlines in nose units (the tip of the person's nose at the origin), width, height scale.
_NOSE_SIZE = {
    "cat": (0.34, 0.24),
    "dog": (0.5, 0.34),
    "bear": (0.46, 0.3),
    "rabbit": (0.22, 0.15),
    "koala": (0.4, 0.46),
}
_BROAD_NOSES = ("dog", "bear", "koala")


def _nose_outline(kind: str) -> FloatArray:
    """A rounded inverted triangle; the dog's is broader and flatter at the bottom."""
    w, h = _NOSE_SIZE.get(kind, _NOSE_SIZE["cat"])
    flat = 0.35 if kind in _BROAD_NOSES else 0.12
    tl, tr, bot = np.array([-w / 2, -h / 2]), np.array([w / 2, -h / 2]), np.array([0.0, h / 2])
    return path(
        cubic(tl, (-w * 0.2, -h * 0.75), (w * 0.2, -h * 0.75), tr),
        cubic(tr, (w * 0.62, -h * 0.3), (w * flat, h * 0.5), bot),
        cubic(bot, (-w * flat, h * 0.5), (-w * 0.62, -h * 0.3), tl),
    )[:-1]


def nose_center(frame: FaceFrame) -> FloatArray:
    """Where the animal's nose sits: on the tip of the person's nose, nudged up a little."""
    return np.asarray(frame.nose + np.array([0.0, -0.02]), dtype=np.float64)


def nose_bottom(
    frame: FaceFrame, style: Style, size: tuple[float, float] = (1.0, 1.0)
) -> FloatArray:
    """The bottom point of the nose draw_nose draws."""
    h = _NOSE_SIZE.get(style.nose_kind, _NOSE_SIZE["cat"])[1] * size[1]
    return np.asarray(nose_center(frame) + np.array([0.0, h / 2]), dtype=np.float64)


def draw_nose(
    sketch: Sketch,
    frame: FaceFrame,
    style: Style,
    size: tuple[float, float] = (1.0, 1.0),
    philtrum: bool = True,
) -> None:
    """The nose with its outline, nostrils (dog, bear), a gloss highlight and (with `philtrum`)
    the line down to the lip; `size` scales it across and down."""
    c = nose_center(frame)
    outline = _nose_outline(style.nose_kind) * np.asarray(size) + c
    w, h = _NOSE_SIZE.get(style.nose_kind, _NOSE_SIZE["cat"])
    w, h = w * size[0], h * size[1]
    line_colour = (*style.dark, 255)
    bottom = nose_bottom(frame, style, size)
    lip = frame.mouth[1] - 0.1
    if philtrum and lip > bottom[1] + 0.04:
        lip_top = (frame.mouth[0], lip)
        line = cubic(bottom, bottom + np.array([0.0, 0.05]), (lip_top[0], lip - 0.05), lip_top)
        sketch.line(line, line_colour, 0.025)
    sketch.polygon(outline, (*style.nose, 255), line_colour, 0.03 * size[1])
    if style.nose_kind in _BROAD_NOSES:
        for side in (-1, 1):
            sketch.polygon(
                ellipse(
                    c[0] + side * w * 0.2, c[1] + h * 0.08, w * 0.1, h * 0.12, side * -25.0, 20
                ),
                (8, 6, 6, 200),
            )
    sketch.polygon(
        ellipse(c[0] - w * 0.12, c[1] - h * 0.22, w * 0.14, h * 0.1, -15.0, 20),
        (255, 255, 255, 150),
    )


def muzzle_extent(frame: FaceFrame) -> FloatArray:
    """Corners of a box (face units) holding the nose, whiskers and teeth."""
    nx, ny = nose_center(frame)
    reach = 0.35 + max(whisker_length(frame, -1.0), whisker_length(frame, 1.0))
    bottom = max(frame.mouth[1] + 0.2, ny + 0.55)
    return np.array(
        [
            [nx - reach, ny - 0.25],
            [nx + reach, ny - 0.25],
            [nx + reach, bottom],
            [nx - reach, bottom],
        ]
    )


def whisker_length(frame: FaceFrame, side: float) -> float:
    """Whisker length on one side (-1: image left); shorter on the far side of a turned head."""
    turn = float(np.clip(side * frame.nose[0] / 0.45, -1.0, 1.0))  # +1: the nose points this way
    return (0.75 + 0.25 * frame.half_width) * (1.0 - 0.6 * max(turn, 0.0))


def draw_whiskers(sketch: Sketch, frame: FaceFrame, style: Style) -> None:
    """Three gently curved whiskers on each side, from the muzzle outwards, with their dots."""
    if style.whiskers is None:
        return
    c = nose_center(frame)
    for side in (-1.0, 1.0):
        length = whisker_length(frame, side)
        for i, droop in enumerate((-0.14, 0.0, 0.14)):
            start = c + np.array([side * 0.3, 0.16 + 0.07 * i])
            end = start + np.array([side * length, droop * length + 0.02])
            mid = (start + end) / 2 + np.array([0.0, -0.07])
            sketch.line(cubic(start, mid, mid, end, 12), (*style.whiskers, 255), 0.022, 0.006)
            sketch.dot(
                c[0] + side * (0.16 + 0.06 * i),
                c[1] + 0.2 + 0.05 * (i % 2),
                0.018,
                (*style.dark, 120),
            )


def draw_teeth(sketch: Sketch, frame: FaceFrame, style: Style) -> None:
    """Two buck teeth just under the upper lip (rabbit)."""
    if not style.teeth:
        return
    mx, my = frame.mouth
    for side in (-1.0, 1.0):
        tooth = transform(
            np.array([[0, 0], [0.1, 0], [0.1, 0.13], [0.08, 0.15], [0.02, 0.15], [0, 0.13]]),
            offset=(mx + (0.005 if side > 0 else -0.105), my - 0.02),
        )
        sketch.polygon(tooth, (252, 252, 248, 255), (*style.dark, 200), 0.015)

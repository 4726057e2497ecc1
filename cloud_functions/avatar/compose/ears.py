"""Ears: shapes in ear units (base at the origin, pointing up), placed on the top of the head."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from avatar.compose.animals import RGB, Style
from avatar.compose.geometry import FaceFrame, FloatArray, cubic, ellipse, mirror, path, transform
from avatar.compose.raster import Sketch

EAR_OUTLINE = 0.035  # the ear's outline stroke, face units


@dataclass(frozen=True)
class EarShape:
    """One ear (the subject's left, on the image's right) in face units."""

    outer: FloatArray
    inner: FloatArray
    tip: FloatArray | None  # the darker tip (fox), if any
    rim: FloatArray  # the outlined edge: everything but the base, which grows out of the head
    tufts: FloatArray | None  # a fringe of fur over the base
    base: FloatArray  # the base's midpoint, where the shading is darkest


def _pointed(width: float, height: float, round_tip: float) -> FloatArray:
    left, right, tip = (
        np.array([-width / 2, 0.25]),
        np.array([width / 2, 0.25]),
        np.array([0.04, -height]),
    )
    return path(
        cubic(left, (-width * 0.48, -height * 0.4), (-round_tip, -height * 0.98), tip),
        cubic(tip, (round_tip + 0.04, -height * 0.98), (width * 0.5, -height * 0.4), right),
        cubic(right, (width * 0.25, 0.4), (-width * 0.25, 0.4), left),
    )[:-1]


def _ear_units(kind: str) -> tuple[FloatArray, FloatArray]:
    """Outer and inner outlines of an ear kind, in ear units."""
    if kind == "round":
        return ellipse(0, -0.3, 0.44, 0.42), ellipse(0, -0.26, 0.26, 0.24)
    if kind == "fluffy":
        return _fluffy(0.42, -0.32, 0.14), _fluffy(0.26, -0.3, 0.2)
    if kind == "long":
        return ellipse(0, -1.05, 0.3, 1.25), ellipse(0, -1.0, 0.15, 0.95)
    if kind == "tall":
        return _pointed(0.95, 1.5, 0.08), transform(_pointed(0.55, 1.1, 0.06), offset=(0.02, -0.1))
    if kind == "rounded":
        return _pointed(1.0, 0.95, 0.24), transform(
            _pointed(0.56, 0.62, 0.15), offset=(0.02, -0.08)
        )
    return _pointed(0.95, 1.1, 0.1), transform(_pointed(0.54, 0.78, 0.07), offset=(0.02, -0.08))


# Where each ear kind sits: x of its base on the head, tilt outwards (degrees).
_PLACEMENT = {
    "round": (0.82, 28.0),
    "long": (0.42, 10.0),
    "tall": (0.7, 17.0),
    "rounded": (0.78, 24.0),
    "fluffy": (0.9, 34.0),
}


def _fluffy(radius: float, cy: float, spike: float, n: int = 72) -> FloatArray:
    """A round ear with a tufted edge: soft tufts of uneven length (fixed, not random)."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    tufts = np.abs(np.sin(t * 4.5)) ** 0.6 * (0.6 + 0.4 * np.sin(t * 3.1 + 1.0))
    r = radius * (1.0 + spike * tufts)
    return np.stack([r * np.cos(t), cy + r * np.sin(t)], axis=1)


def ear_anchor_y(frame: FaceFrame) -> float:
    """The y of the top of the skull: above the forehead by a share of the face's height."""
    return frame.top - 0.2 * frame.height


def ear_shape(frame: FaceFrame, style: Style) -> EarShape:
    """The subject's left ear for this face and style, in face units."""
    if style.ear == "floppy":
        return _floppy(frame)
    outer, inner, rim, tufts_units = _ear_template(style.ear)
    base_x, tilt = _PLACEMENT.get(style.ear, (0.72, 20.0))
    size = style.ear_size * max(frame.half_width, 0.9)
    anchor = (base_x * frame.half_width, ear_anchor_y(frame))

    def place(points: FloatArray) -> FloatArray:
        return transform(points, scale=size, angle_deg=tilt, offset=anchor)

    tip = place(outer[outer[:, 1] < -0.95]) if style.ear_tip is not None else None
    tufts = place(tufts_units) if tufts_units is not None else None
    return EarShape(place(outer), place(inner), tip, place(rim), tufts, place(np.zeros((1, 2)))[0])


@lru_cache(maxsize=16)
def _ear_template(kind: str) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
    """Outer and inner outlines, outlined rim and base tufts of an ear kind, in ear units."""
    outer, inner = _ear_units(kind)
    tufted = kind in ("pointed", "tall", "rounded")
    width = float(outer[:, 0].max() - outer[:, 0].min())
    tufts = _tufts(width * 0.8) if tufted else None
    return outer, inner, _rim(outer, outer[:, 1] < (0.05 if tufted else -0.1)), tufts


def _rim(points: FloatArray, keep: npt.NDArray[np.bool_]) -> FloatArray:
    """The kept points as one open polyline (the dropped ones are one run of the outline)."""
    dropped = np.flatnonzero(~keep)
    if len(dropped) == 0:
        return np.concatenate([points, points[:1]])
    shift = len(points) - 1 - int(dropped[-1])
    rolled, kept = np.roll(points, shift, axis=0), np.roll(keep, shift)
    return np.asarray(rolled[kept])


def _tufts(width: float, count: int = 7) -> FloatArray:
    """A zig-zag fringe of fur along the base of an ear, in ear units."""
    xs = np.linspace(-width / 2, width / 2, 2 * count + 1)
    ys = np.where(np.arange(len(xs)) % 2 == 1, -0.2, -0.04)
    ys[len(xs) // 2 :: 4] -= 0.05  # uneven tips look like fur rather than a saw blade
    top = np.stack([xs, ys], axis=1)
    return np.concatenate([top, [[width / 2, 0.25], [-width / 2, 0.25]]])


def _floppy(frame: FaceFrame) -> EarShape:
    """A dog's ear: attached high on the side of the head, hanging down beside the cheek."""
    hw, top = frame.half_width, ear_anchor_y(frame) + 0.15
    bottom = frame.mouth[1] + 0.05
    a, b = np.array([0.35 * hw, top]), np.array([hw * 1.02, 0.25])
    outer = path(
        cubic(a, (0.9 * hw, top - 0.35), (1.45 * hw, top - 0.05), (1.5 * hw, 0.3)),
        cubic(
            (1.5 * hw, 0.3),
            (1.6 * hw, bottom - 0.1),
            (1.35 * hw, bottom + 0.25),
            (1.12 * hw, bottom),
        ),
        cubic((1.12 * hw, bottom), (0.98 * hw, bottom - 0.3), (0.98 * hw, 0.6), b),
        cubic(b, (0.95 * hw, -0.3), (0.6 * hw, top + 0.2), a),
    )[:-1]
    inner = transform(outer, scale=0.7, offset=(0.36 * hw, 0.12))
    rim = np.concatenate([outer, outer[:1]])
    return EarShape(outer, inner, None, rim, None, np.array([0.7 * hw, top]))


def draw_ear(sketch: Sketch, ear: EarShape, style: Style) -> None:
    """One ear with rim, inner colour, depth shading, tip and an outline."""
    rim = style.ear_back or style.fur
    sketch.polygon(ear.outer, (*rim, 255))
    # Darker towards the base: copies shrunk towards it fake a gradient. Each lies on a known
    # colour, so its "translucent" look is mixed here and drawn opaque (the fast path).
    shadow = _shade(rim, 0.7)
    level = rim
    for k in (0.75, 0.45):
        level = _mix(level, shadow, 0.22)
        sketch.polygon(_towards(ear.outer, ear.base, k), (*level, 255))
    if ear.tip is not None and style.ear_tip is not None:
        sketch.polygon(ear.tip, (*style.ear_tip, 255))
    inner_line = _mix(rim, _shade(style.inner_ear, 0.75), 0.8)
    sketch.polygon(ear.inner, (*style.inner_ear, 255), (*inner_line, 255), 0.025)
    deep = _mix(style.inner_ear, _shade(style.inner_ear, 0.75), 0.35)
    sketch.polygon(_towards(ear.inner, ear.base, 0.6), (*deep, 255))
    sketch.line(_towards(ear.rim, _centroid(ear.outer), 0.9), (255, 255, 255, 55), 0.035)
    if ear.tufts is not None:
        sketch.polygon(ear.tufts, (*_shade(rim, 0.92), 255))
    sketch.line(ear.rim, (*style.dark, 255), EAR_OUTLINE)


def _shade(color: RGB, factor: float) -> RGB:
    return (
        min(int(color[0] * factor), 255),
        min(int(color[1] * factor), 255),
        min(int(color[2] * factor), 255),
    )


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    """a blended towards b by t."""
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _towards(points: FloatArray, center: FloatArray, k: float) -> FloatArray:
    """Points scaled by k about a centre."""
    return np.asarray(center + (points - center) * k, dtype=np.float64)


def _centroid(points: FloatArray) -> FloatArray:
    return np.asarray(points.mean(axis=0), dtype=np.float64)


def both_ears(frame: FaceFrame, style: Style) -> tuple[EarShape, EarShape]:
    """The subject's right ear (image left) and left ear (image right), over the head's middle."""
    left = ear_shape(frame, style)
    tip = mirror(left.tip) if left.tip is not None else None
    tufts = mirror(left.tufts) if left.tufts is not None else None
    base = left.base * np.array([-1.0, 1.0])
    right = EarShape(mirror(left.outer), mirror(left.inner), tip, mirror(left.rim), tufts, base)
    return _shifted(right, frame.head_x), _shifted(left, frame.head_x)


def _shifted(ear: EarShape, dx: float) -> EarShape:
    """The ear moved sideways by dx face units."""
    d = np.array([dx, 0.0])
    return EarShape(
        ear.outer + d,
        ear.inner + d,
        None if ear.tip is None else ear.tip + d,
        ear.rim + d,
        None if ear.tufts is None else ear.tufts + d,
        ear.base + d,
    )

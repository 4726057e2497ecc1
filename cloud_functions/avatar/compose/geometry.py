"""Face-aligned coordinates and shape helpers.

Every part of a character is drawn in *face units*: the origin is the midpoint between the eyes,
x runs from the subject's right eye to the left eye, y runs down the face, and one unit is the
inter-ocular distance. Mapping to the image therefore scales with the face and rotates with the
head's roll, whichever detector found the face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from avatar.faces import Face

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FaceFrame:
    """A face's own coordinate system plus its key measures, in face units."""

    origin: FloatArray  # midpoint between the eyes, image pixels
    axis_x: FloatArray  # unit vector towards the subject's left eye (image right when frontal)
    axis_y: FloatArray  # unit vector down the face
    unit: float  # inter-ocular distance, image pixels
    nose: FloatArray  # nose tip
    mouth: FloatArray  # mouth centre
    mouth_half: float  # half the mouth's width
    chin: float  # y of the chin
    top: float  # y of the forehead (upper edge of the face outline)
    half_width: float  # half the face's width at the cheeks
    head_x: float = 0.0  # x of the head's middle: off the eyes' midpoint when the head turns

    def to_image(self, points: npt.ArrayLike) -> FloatArray:
        """Face-unit points (N, 2) to image pixels (N, 2)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        # Column times row: the same products as np.outer, without its per-call overhead.
        return self.origin + (p[:, :1] * self.axis_x + p[:, 1:] * self.axis_y) * self.unit

    def to_local(self, points: npt.ArrayLike) -> FloatArray:
        """Image-pixel points (N, 2) to face units (N, 2)."""
        d = (np.asarray(points, dtype=np.float64).reshape(-1, 2) - self.origin) / self.unit
        return np.stack([d @ self.axis_x, d @ self.axis_y], axis=1)

    @property
    def height(self) -> float:
        """Forehead-to-chin distance in face units."""
        return self.chin - self.top


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _axes(face: Face) -> tuple[FloatArray, FloatArray, FloatArray, float]:
    """Origin, x axis, y axis and unit from the eyes (the roll angle if the eyes coincide)."""
    right = np.asarray(face.landmarks["right_eye"], dtype=np.float64)
    left = np.asarray(face.landmarks["left_eye"], dtype=np.float64)
    delta = left - right
    dist = float(np.hypot(*delta))
    if dist < 1e-3:
        angle = math.radians(face.roll_deg)
        delta = np.array([math.cos(angle), math.sin(angle)])
        dist = max(face.box.width * 0.4, 1.0)
    axis_x = delta / np.hypot(*delta)
    axis_y = np.array([-axis_x[1], axis_x[0]])
    # Eyes are about 40% of the face's width apart; guard against a squeezed profile view.
    unit = max(dist, 0.3 * max(face.box.width, face.box.height))
    return (right + left) / 2, axis_x, axis_y, unit


def face_frame(face: Face) -> FaceFrame:
    """The face's frame, with every measure clamped to plausible human proportions."""
    origin, axis_x, axis_y, unit = _axes(face)
    frame = FaceFrame(origin, axis_x, axis_y, unit, np.zeros(2), np.zeros(2), 0.5, 1.7, -1.0, 1.0)
    lm = {k: frame.to_local(v)[0] for k, v in face.landmarks.items()}
    contour = frame.to_local(face.contour) if len(face.contour) >= 3 else np.zeros((0, 2))
    nose = np.array([_clamp(lm["nose_tip"][0], -0.45, 0.45), _clamp(lm["nose_tip"][1], 0.4, 1.0)])
    mouth = np.array(
        [_clamp(lm["mouth_center"][0], -0.5, 0.5), _clamp(lm["mouth_center"][1], 0.8, 1.6)]
    )
    mouth_half = _clamp(float(np.hypot(*(lm["mouth_left"] - lm["mouth_right"]))) / 2, 0.3, 0.75)
    chin = _clamp(float(lm["chin"][1]), mouth[1] + 0.3, 2.4)
    top_candidates = [float(lm["forehead"][1])] + (
        [float(contour[:, 1].min())] if len(contour) else []
    )
    top = _clamp(min(top_candidates), -1.6, -0.6)
    half_width, head_x = _width_and_middle(contour)
    return FaceFrame(
        origin, axis_x, axis_y, unit, nose, mouth, mouth_half, chin, top, half_width, head_x
    )


def _width_and_middle(contour: FloatArray) -> tuple[float, float]:
    """Half the outline's width around eye level and the x of its middle (defaults: 0.95, 0)."""
    if len(contour) < 3:
        return 0.95, 0.0
    band = contour[np.abs(contour[:, 1] - 0.3) < 0.6]
    if len(band) < 2:
        band = contour
    low, high = float(band[:, 0].min()), float(band[:, 0].max())
    return _clamp((high - low) / 2, 0.75, 1.4), _clamp((high + low) / 2, -0.45, 0.45)


# Shapes, all in face units: closed polygons are (N, 2) arrays.


def ellipse(
    cx: float, cy: float, rx: float, ry: float, angle_deg: float = 0.0, n: int = 48
) -> FloatArray:
    """A closed ellipse polygon, rotated by angle_deg (clockwise on screen)."""
    cos_t, sin_t = _circle(n)
    pts = np.stack([rx * cos_t, ry * sin_t], axis=1)
    return transform(pts, angle_deg=angle_deg, offset=(cx, cy))


@lru_cache(maxsize=32)
def _circle(n: int) -> tuple[FloatArray, FloatArray]:
    """cos and sin of n angles evenly round the circle (shared, read-only)."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return _frozen(np.cos(t)), _frozen(np.sin(t))


def cubic(
    p0: npt.ArrayLike, p1: npt.ArrayLike, p2: npt.ArrayLike, p3: npt.ArrayLike, n: int = 16
) -> FloatArray:
    """Points along a cubic Bézier curve, both ends included."""
    w0, w1, w2, w3 = _bezier_weights(n)
    a, b, c, d = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2, p3))
    return w0 * a + w1 * b + w2 * c + w3 * d


@lru_cache(maxsize=32)
def _bezier_weights(n: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The cubic Bernstein weights (n, 1) at n evenly spaced t, both ends included (read-only)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    weights = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3)
    return _frozen(weights[0]), _frozen(weights[1]), _frozen(weights[2]), _frozen(weights[3])


def _frozen(array: FloatArray) -> FloatArray:
    """The array made read-only, so a cached copy can be shared safely."""
    array.setflags(write=False)
    return array


def path(*segments: FloatArray) -> FloatArray:
    """Joins curve segments, dropping each segment's repeated first point."""
    parts = [segments[0]] + [s[1:] for s in segments[1:]]
    return np.concatenate(parts, axis=0)


def transform(
    points: npt.ArrayLike,
    *,
    scale: float | tuple[float, float] = 1.0,
    angle_deg: float = 0.0,
    offset: tuple[float, float] | FloatArray = (0.0, 0.0),
) -> FloatArray:
    """Scales, then rotates (clockwise on screen, y pointing down), then translates points."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2) * np.asarray(scale, dtype=np.float64)
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return np.asarray(p @ rot + np.asarray(offset, dtype=np.float64), dtype=np.float64)


def mirror(points: FloatArray) -> FloatArray:
    """Mirrors points across the face's vertical axis (x -> -x), keeping the winding order."""
    return np.asarray(points[::-1] * np.array([-1.0, 1.0]), dtype=np.float64)

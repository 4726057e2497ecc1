"""Cloud Vision FaceAnnotation → the pipeline's Face model (pure geometry, no client types).

Vision names left and right from the viewer ("LEFT_EYE, typically, is the person's right eye");
the Face model names them from the subject. Every LEFT/RIGHT is therefore swapped here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from avatar.faces import REQUIRED_LANDMARKS, Box, Face, Point

# Vision's names that are not just a left/right swap of ours.
_RENAMED = {
    "CHIN_GNATHION": "chin",
    "FOREHEAD_GLABELLA": "forehead",
    "LEFT_EAR_TRAGION": "right_ear",
    "RIGHT_EAR_TRAGION": "left_ear",
}

# Where each required landmark sits on an upright face, as fractions of its fd box
# (subject's right on the image's left); used only when Vision leaves one out.
_CANONICAL: dict[str, Point] = {
    "right_eye": (0.3, 0.38),
    "left_eye": (0.7, 0.38),
    "nose_tip": (0.5, 0.58),
    "mouth_center": (0.5, 0.75),
    "mouth_right": (0.35, 0.75),
    "mouth_left": (0.65, 0.75),
    "chin": (0.5, 0.98),
    "forehead": (0.5, 0.28),
    "right_ear": (0.02, 0.5),
    "left_ear": (0.98, 0.5),
}

CONTOUR_POINTS = 64


def landmark_name(vision_type: str) -> str:
    """Our subject-relative name for a Vision landmark type, e.g. LEFT_EYE → right_eye."""
    if vision_type in _RENAMED:
        return _RENAMED[vision_type]
    swapped = vision_type.replace("LEFT", "\0").replace("RIGHT", "LEFT").replace("\0", "RIGHT")
    return swapped.lower()


def face_from_vision(
    vertices: Iterable[Point],
    landmarks: Mapping[str, Point],
    roll_angle: float,
    confidence: float,
) -> Face:
    """One Face from a FaceAnnotation's fd box vertices, landmarks (Vision names) and angles."""
    box = _box(list(vertices))
    named = {landmark_name(kind): point for kind, point in landmarks.items()}
    roll_deg = _roll_deg(named, roll_angle)
    for name in REQUIRED_LANDMARKS:
        named.setdefault(name, _canonical_point(box, name, roll_deg))
    contour = face_contour(named, roll_deg)
    return Face(box, named, float(confidence), roll_deg, contour)


def _box(vertices: list[Point]) -> Box:
    xs = [x for x, _ in vertices] or [0.0]
    ys = [y for _, y in vertices] or [0.0]
    return Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def _roll_deg(named: Mapping[str, Point], roll_angle: float) -> float:
    """The eye line's angle (image y points down; positive = clockwise on screen).

    Measured from the eyes when Vision gives them, so the sign matches what the local detector
    computes; Vision's rollAngle only stands in when an eye is missing.
    """
    if "right_eye" in named and "left_eye" in named:
        (rx, ry), (lx, ly) = named["right_eye"], named["left_eye"]
        return math.degrees(math.atan2(ly - ry, lx - rx))
    return float(roll_angle)


def _canonical_point(box: Box, name: str, roll_deg: float) -> Point:
    fx, fy = _CANONICAL[name]
    dx, dy = (fx - 0.5) * box.width, (fy - 0.5) * box.height
    cos_r, sin_r = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    cx, cy = box.center
    return (cx + dx * cos_r - dy * sin_r, cy + dx * sin_r + dy * cos_r)


def face_contour(named: Mapping[str, Point], roll_deg: float) -> npt.NDArray[np.float32]:
    """A closed, clockwise ellipse around the face: ears to ears, hairline to chin, rolled.

    The glabella sits about a third of the way down from the hairline to the chin, so the top
    of the outline is extended above it by half the glabella-to-chin distance.
    """
    cos_r, sin_r = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    u_axis, v_axis = np.array([cos_r, sin_r]), np.array([-sin_r, cos_r])
    origin = (np.array(named["right_eye"]) + np.array(named["left_eye"])) / 2

    def uv(name: str) -> tuple[float, float]:
        offset = np.array(named[name]) - origin
        return float(offset @ u_axis), float(offset @ v_axis)

    (ru, _), (lu, _) = uv("right_ear"), uv("left_ear")
    (_, chin_v), (_, brow_v) = uv("chin"), uv("forehead")
    top_v = brow_v - 0.5 * max(chin_v - brow_v, 1.0)
    half_w, half_h = max(abs(lu - ru) / 2, 1.0), max((chin_v - top_v) / 2, 1.0)
    center = origin + u_axis * (ru + lu) / 2 + v_axis * (top_v + chin_v) / 2
    t = np.linspace(0.0, 2 * np.pi, CONTOUR_POINTS, endpoint=False)
    points = center + np.outer(half_w * np.cos(t), u_axis) + np.outer(half_h * np.sin(t), v_axis)
    contour: npt.NDArray[np.float32] = points.astype(np.float32)
    return contour

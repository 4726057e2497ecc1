"""A plausible Face and mask from two eye positions, for previews and tests without a detector."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from avatar.compose.geometry import FaceFrame, ellipse, face_frame
from avatar.compose.pose import LEFT_EYE, MESH_POINTS, MOUTH, RIGHT_EYE
from avatar.faces import Box, Face

# Average frontal proportions in face units (inter-ocular distance; y down from the eyes).
_LANDMARKS = {
    "right_eye": (-0.5, 0.0),
    "left_eye": (0.5, 0.0),
    "nose_tip": (0.0, 0.62),
    "mouth_center": (0.0, 1.05),
    "mouth_right": (-0.38, 1.02),
    "mouth_left": (0.38, 1.02),
    "chin": (0.0, 1.72),
    "forehead": (0.0, -1.0),
    "right_ear": (-1.05, 0.35),
    "left_ear": (1.05, 0.35),
}


def synthetic_face(right_eye: tuple[float, float], left_eye: tuple[float, float]) -> Face:
    """A Face with landmarks and an oval outline placed by average proportions around the eyes."""
    r, lft = np.asarray(right_eye, dtype=np.float64), np.asarray(left_eye, dtype=np.float64)
    d = lft - r
    unit = float(np.hypot(*d))
    ax = d / unit
    frame = FaceFrame(
        (r + lft) / 2,
        ax,
        np.array([-ax[1], ax[0]]),
        unit,
        np.zeros(2),
        np.zeros(2),
        0.4,
        1.7,
        -1.0,
        1.0,
    )
    landmarks = {k: tuple(float(v) for v in frame.to_image(p)[0]) for k, p in _LANDMARKS.items()}
    contour = frame.to_image(ellipse(0.0, 0.35, 0.98, 1.38, n=36)).astype(np.float32)
    x0, y0 = contour.min(axis=0)
    x1, y1 = contour.max(axis=0)
    roll = float(np.degrees(np.arctan2(d[1], d[0])))
    box = Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0))
    return Face(box, landmarks, 0.99, roll, contour)  # type: ignore[arg-type]


def synthetic_mask(size: tuple[int, int], face: Face) -> Image.Image:
    """A feathered "L" mask filling the face's outline."""
    img = Image.new("L", size, 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in face.contour], fill=255)
    return img.filter(ImageFilter.GaussianBlur(max(face.box.width * 0.03, 1.0)))


def with_expression(face: Face, eyes: float = 0.3, mouth: float = 0.0) -> Face:
    """The face with a sparse face mesh: lids `eyes` and lips `mouth` apart (over the width).

    Only the points avatar.compose.pose reads are placed (eye corners and lids, mouth corners
    and inner lips); the rest lie at the origin. 0.3 is an open eye, 0.02 a closed one.
    """
    frame = face_frame(face)
    mesh = np.zeros((MESH_POINTS, 3), dtype=np.float32)
    for eye, (upper, lower, outer, inner) in (("right_eye", RIGHT_EYE), ("left_eye", LEFT_EYE)):
        centre = np.asarray(face.landmarks[eye], dtype=np.float64)
        half = 0.25 * frame.unit
        outward = -1.0 if eye == "right_eye" else 1.0
        mesh[outer, :2] = centre + outward * half * frame.axis_x
        mesh[inner, :2] = centre - outward * half * frame.axis_x
        mesh[upper, :2] = centre - eyes * half * frame.axis_y
        mesh[lower, :2] = centre + eyes * half * frame.axis_y
    right = np.asarray(face.landmarks["mouth_right"], dtype=np.float64)
    left = np.asarray(face.landmarks["mouth_left"], dtype=np.float64)
    centre = np.asarray(face.landmarks["mouth_center"], dtype=np.float64)
    gap = mouth * float(np.hypot(*(left - right))) / 2
    upper, lower, corner_right, corner_left = MOUTH
    mesh[corner_right, :2], mesh[corner_left, :2] = right, left
    mesh[upper, :2] = centre - gap * frame.axis_y
    mesh[lower, :2] = centre + gap * frame.axis_y
    return replace(face, mesh=mesh)

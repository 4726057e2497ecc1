"""How a face looks right now: its eyes' and mouth's openness and its turn, from the landmarks.

The `character` style animates its animal by these: the drawn eyes close when the person's do, the
mouth opens with theirs, and the features shift and narrow as the head turns. Openness comes from
the face mesh (the local detector's 468 points) as lid and lip distances over the eye's and the
mouth's width, the measure face-tracking avatars use; a face without a mesh (Cloud Vision's) looks
straight ahead with open eyes and a closed mouth. The turn comes from the named landmarks alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar.compose.geometry import FaceFrame
from avatar.faces import Face

# Points of MediaPipe's 468-point face mesh (the topology the local landmark model outputs):
# (upper lid, lower lid, outer corner, inner corner) of each eye, and the inner lips and the
# mouth's corners. "right" is the subject's right (the image's left).
RIGHT_EYE = (159, 145, 33, 133)
LEFT_EYE = (386, 374, 263, 362)
MOUTH = (13, 14, 61, 291)
MESH_POINTS = 468

# Lid distance over eye width: at or below CLOSED the eye is shut, at or above OPEN fully open
# (measured: 0.28-0.35 on open eyes of the bundled photographs).
EYE_CLOSED, EYE_OPEN = 0.1, 0.26
# Lip distance over mouth width: a closed mouth reads below 0.06 (0.01 on a closed-mouth portrait),
# a wide-open one about 0.5.
MOUTH_CLOSED, MOUTH_OPEN = 0.06, 0.5
# A frontal face is about 2.35 eye distances from forehead to chin.
FRONTAL_HEIGHT = 2.35


@dataclass(frozen=True)
class Pose:
    """Openness from 0 (closed) to 1 (open) and the head's turn, for drawing a character.

    `turn` is the sine of the head's yaw: positive when the nose points to the image's right.
    `scale` is the face's height over a frontal face's, in face units (the eye distance the units
    are measured in shrinks as the head turns; features sized by it keep their size).
    """

    right_eye: float = 1.0
    left_eye: float = 1.0
    mouth: float = 0.0
    turn: float = 0.0
    scale: float = 1.0


def _ramp(value: float, low: float, high: float) -> float:
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


def _ratio(mesh: np.ndarray, points: tuple[int, int, int, int]) -> float:
    """Distance of the first two points over that of the last two (0 when those coincide)."""
    a, b, c, d = (np.asarray(mesh[i, :2], dtype=np.float64) for i in points)
    width = float(np.hypot(*(c - d)))
    return float(np.hypot(*(a - b))) / width if width > 1e-6 else 0.0


def pose_of(face: Face, frame: FaceFrame) -> Pose:
    """The face's pose: openness from its mesh when it has one, the turn from its landmarks."""
    turn = float(np.clip((frame.nose[0] - frame.head_x) / max(frame.half_width, 1e-6), -0.8, 0.8))
    scale = float(np.clip(frame.height / FRONTAL_HEIGHT, 0.8, 1.6))
    mesh = face.mesh
    if mesh is None or len(mesh) < MESH_POINTS:
        return Pose(turn=turn, scale=scale)
    return Pose(
        right_eye=_ramp(_ratio(mesh, RIGHT_EYE), EYE_CLOSED, EYE_OPEN),
        left_eye=_ramp(_ratio(mesh, LEFT_EYE), EYE_CLOSED, EYE_OPEN),
        mouth=_ramp(_ratio(mesh, MOUTH), MOUTH_CLOSED, MOUTH_OPEN),
        turn=turn,
        scale=scale,
    )

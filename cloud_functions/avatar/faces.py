"""The face model every detector produces and every mask/compositor consumes.

Coordinates are image pixels of the working image (after EXIF transpose and downscale).
Left/right are the *subject's*: on an unmirrored frontal selfie `right_eye` lies on the image's
left. Detectors (local BlazeFace + face mesh, or Cloud Vision) map their output into this model so
nothing downstream cares which backend found the face.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Point = tuple[float, float]

# Named landmarks every detector must provide (more may be present).
REQUIRED_LANDMARKS = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_center",
    "mouth_right",
    "mouth_left",
    "chin",
    "forehead",
    "right_ear",
    "left_ear",
)


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float

    @property
    def center(self) -> Point:
        return (self.x + self.width / 2, self.y + self.height / 2)

    @property
    def area(self) -> float:
        return self.width * self.height


@dataclass(frozen=True)
class Face:
    """One face: its box, named landmarks, roll and outline, in working-image pixels."""

    box: Box
    landmarks: dict[str, Point]
    confidence: float
    roll_deg: float
    # Closed polygon of the face outline (forehead, temples, jaw, chin), shape (N, 2), clockwise.
    contour: npt.NDArray[np.float32]
    # The 468-point face mesh (x, y, z) when the local landmark model ran; None otherwise.
    mesh: npt.NDArray[np.float32] | None = field(default=None, compare=False)

    def to_json(self, scale: float = 1.0) -> dict[str, Any]:
        """The SPEC's `{box, landmarks, confidence}`; `scale` maps back to another image size."""
        b = self.box
        return {
            "box": {
                "x": round(b.x * scale, 1),
                "y": round(b.y * scale, 1),
                "width": round(b.width * scale, 1),
                "height": round(b.height * scale, 1),
            },
            "landmarks": {
                name: {"x": round(x * scale, 1), "y": round(y * scale, 1)}
                for name, (x, y) in self.landmarks.items()
            },
            "confidence": round(self.confidence, 4),
            "roll_deg": round(self.roll_deg, 2),
        }

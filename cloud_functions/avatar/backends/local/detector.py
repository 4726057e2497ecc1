"""Local face detection: BlazeFace (short + full range) then the 468-point face-landmark model.

The landmark model only works on a face-centred, roll-aligned crop, so each BlazeFace detection
becomes a rotated square region (MediaPipe's 1.5x rule); the mesh is read there and mapped back
to image pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from avatar.backends.local import blazeface as bf
from avatar.backends.local.mesh import FACE_OVAL, LANDMARK_POINTS, LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from avatar.backends.local.runtime import ModelRunner
from avatar.faces import Box, Face

FloatArray = npt.NDArray[np.float32]

LANDMARK_MODEL = "face_landmark"
LANDMARK_PX = 192
ROI_SCALE = 1.5
MIN_PRESENCE_LOGIT = 0.0  # sigmoid(0) = 0.5, MediaPipe's face-presence threshold
DUPLICATE_IOU = 0.4


@dataclass(frozen=True)
class Roi:
    """A rotated square in image pixels: centre, side, and roll (radians, clockwise on screen)."""

    cx: float
    cy: float
    side: float
    angle: float

    def affine(self, px: int) -> tuple[float, float, float, float, float, float]:
        """Coefficients mapping crop pixels (0..px) to image pixels (PIL's AFFINE order)."""
        cos, sin, k = math.cos(self.angle), math.sin(self.angle), self.side / px
        half = self.side / 2
        return (
            k * cos, -k * sin, self.cx - half * cos + half * sin,
            k * sin, k * cos, self.cy - half * sin - half * cos,
        )  # fmt: skip


@dataclass(frozen=True)
class Letterbox:
    """Maps coordinates normalised to a letterboxed square back to image pixels."""

    side: float
    offset_x: float
    offset_y: float

    def to_image(self, points: FloatArray) -> FloatArray:
        """Normalised (..., 2) points to image pixels."""
        offset = np.array([self.offset_x, self.offset_y], dtype=np.float32)
        return (points * self.side - offset).astype(np.float32)


def fit(size: tuple[int, int], px: int) -> tuple[int, int]:
    """`size` scaled so its long side is `px`."""
    scale = px / max(size)
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


def letterbox(image: Image.Image, px: int, size: tuple[int, int]) -> tuple[FloatArray, Letterbox]:
    """An image of `size` (possibly pre-shrunk) fitted into a px square, centred on black,
    as a [-1, 1] NHWC tensor, with the mapping back to `size` pixels."""
    fitted = fit(size, px)
    pad = ((px - fitted[0]) // 2, (px - fitted[1]) // 2)
    if image.size != fitted:
        image = image.resize(fitted, Image.Resampling.BILINEAR, reducing_gap=2.0)
    canvas = Image.new("RGB", (px, px))
    canvas.paste(image, pad)
    tensor = np.asarray(canvas, dtype=np.float32)[None] / 127.5 - 1.0
    scale = px / max(size)
    return tensor, Letterbox(px / scale, pad[0] / scale, pad[1] / scale)


def roll(right: FloatArray, left: FloatArray) -> float:
    """The angle (radians) of the line from the subject's right eye to their left eye."""
    return math.atan2(float(left[1] - right[1]), float(left[0] - right[0]))


def detection_roi(points: FloatArray, box: FloatArray) -> Roi:
    """MediaPipe's detection-to-ROI: box centre, long side x1.5, rolled to the eye line."""
    side = float(max(box[2] - box[0], box[3] - box[1])) * ROI_SCALE
    centre = (box[:2] + box[2:]) / 2
    return Roi(float(centre[0]), float(centre[1]), side, roll(points[0], points[1]))


def face_from_mesh(mesh: FloatArray, score: float, size: tuple[int, int]) -> Face:
    """The pipeline's Face from a 468-point mesh in image pixels.

    The box is the face oval's bounds (every named landmark lies inside it); roll_deg is the
    eye line's angle, positive when the face is turned clockwise on screen.
    """
    landmarks = {
        name: (float(mesh[list(idx), 0].mean()), float(mesh[list(idx), 1].mean()))
        for name, idx in LANDMARK_POINTS.items()
    }
    contour = np.ascontiguousarray(mesh[list(FACE_OVAL), :2], dtype=np.float32)
    x0, y0 = np.maximum(contour.min(axis=0), 0.0)
    x1, y1 = np.minimum(contour.max(axis=0), np.array(size, dtype=np.float32))
    box = Box(float(x0), float(y0), float(max(x1 - x0, 1.0)), float(max(y1 - y0, 1.0)))
    angle = math.degrees(roll(mesh[RIGHT_EYE_OUTER], mesh[LEFT_EYE_OUTER]))
    return Face(box, landmarks, score, angle, contour, mesh)


class LocalDetector:
    """FaceDetector on the local BlazeFace and face-landmark models (ai-edge-litert)."""

    name = "local"

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self._anchors = {spec.model: bf.anchors(spec) for spec in (bf.SHORT_RANGE, bf.FULL_RANGE)}

    def detect(self, image: Image.Image) -> list[Face]:
        """Every face found, largest first."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        small = rgb.resize(
            fit(rgb.size, bf.FULL_RANGE.input_px), Image.Resampling.BILINEAR, reducing_gap=2.0
        )
        # Both models always run: short range alone misses the small faces of a group photo.
        candidates = [
            d for spec in (bf.SHORT_RANGE, bf.FULL_RANGE) for d in self._scan(small, rgb.size, spec)
        ]
        faces = [f for d in bf.weighted_nms(candidates) if (f := self._landmarks(rgb, d))]
        return dedupe(sorted(faces, key=lambda f: f.box.area, reverse=True))

    def _scan(
        self, small: Image.Image, size: tuple[int, int], spec: bf.BlazeFaceSpec
    ) -> list[bf.Detection]:
        """One BlazeFace model over the letterboxed image; candidates in image pixels."""
        tensor, box = letterbox(small, spec.input_px, size)
        outputs = self.runner.run(spec.model, tensor)
        raw_boxes, raw_scores = sorted(outputs, key=lambda o: o.shape[-1], reverse=True)
        found = bf.decode(spec, raw_boxes, raw_scores, self._anchors[spec.model])
        return [
            bf.Detection(d.score, box.to_image(d.box.reshape(2, 2)).ravel(),
                         box.to_image(d.keypoints))
            for d in found
        ]  # fmt: skip

    def _landmarks(self, image: Image.Image, detection: bf.Detection) -> Face | None:
        """The face mesh on the detection's roll-aligned ROI, as a Face (None: not a face).

        A second pass on the ROI the mesh implies moved points by ~1% of the face, no more
        than pass-to-pass jitter, so one pass it is (tests/cloud_functions measure landmarks).
        """
        mesh = self._mesh(image, detection_roi(detection.keypoints, detection.box))
        return None if mesh is None else face_from_mesh(mesh, detection.score, image.size)

    def _mesh(self, image: Image.Image, roi: Roi) -> FloatArray | None:
        """468 points (x, y, z) in image pixels, or None when the model sees no face there."""
        coeffs = roi.affine(LANDMARK_PX)
        crop = image.transform(
            (LANDMARK_PX, LANDMARK_PX), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
        )
        tensor = np.asarray(crop, dtype=np.float32)[None] / 255.0
        points, presence = sorted(self.runner.run(LANDMARK_MODEL, tensor), key=np.size)[::-1]
        if float(presence.ravel()[0]) < MIN_PRESENCE_LOGIT:
            return None
        local = points.reshape(468, 3)
        a, b, c, d, e, f = coeffs
        x = a * local[:, 0] + b * local[:, 1] + c
        y = d * local[:, 0] + e * local[:, 1] + f
        z = local[:, 2] * roi.side / LANDMARK_PX
        return np.stack([x, y, z], axis=1).astype(np.float32)


def dedupe(faces: list[Face]) -> list[Face]:
    """Drop faces whose box overlaps a larger face's (two detections of one face)."""
    kept: list[Face] = []
    for face in faces:
        if all(_box_iou(face.box, k.box) < DUPLICATE_IOU for k in kept):
            kept.append(face)
    return kept


def _box_iou(a: Box, b: Box) -> float:
    box = np.array([a.x, a.y, a.x + a.width, a.y + a.height], dtype=np.float32)
    other = np.array([[b.x, b.y, b.x + b.width, b.y + b.height]], dtype=np.float32)
    return float(bf.iou(box, other)[0])

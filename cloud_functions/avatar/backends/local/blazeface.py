"""BlazeFace decoding, pure numpy: SSD anchors, box/keypoint decoding, weighted NMS.

Parameters follow MediaPipe's face_detection_{short,full}_range graphs. Coordinates are
normalised to the model's square (letterboxed) input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BlazeFaceSpec:
    model: str
    input_px: int
    strides: tuple[int, ...]
    anchors_per_layer: int  # one anchor plus the interpolated one when the graph adds it
    min_score: float


SHORT_RANGE = BlazeFaceSpec("face_detection_short_range", 128, (8, 16, 16, 16), 2, 0.5)
FULL_RANGE = BlazeFaceSpec("face_detection_full_range_sparse", 192, (4,), 1, 0.6)
NMS_IOU = 0.3


@dataclass(frozen=True)
class Detection:
    """A face candidate: box (x0, y0, x1, y1) and six keypoints (x, y), normalised."""

    score: float
    box: FloatArray
    keypoints: FloatArray


def anchors(spec: BlazeFaceSpec) -> FloatArray:
    """Anchor centres (N, 2); fixed-size anchors of size 1, layers of equal stride merged."""
    centres: list[FloatArray] = []
    layer = 0
    while layer < len(spec.strides):
        stride, repeats = spec.strides[layer], 0
        while layer < len(spec.strides) and spec.strides[layer] == stride:
            repeats, layer = repeats + spec.anchors_per_layer, layer + 1
        cells = -(-spec.input_px // stride)
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        xs, ys = np.meshgrid(grid, grid)
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, repeats, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode(
    spec: BlazeFaceSpec, raw_boxes: FloatArray, raw_scores: FloatArray, anchor_xy: FloatArray
) -> list[Detection]:
    """Candidates above the spec's score threshold from raw outputs (N, 16) and (N, 1)."""
    # MediaPipe clips raw scores to +-100; exp(100) still fits float32's range.
    clipped = np.clip(raw_scores.reshape(-1).astype(np.float64), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-clipped))
    keep = np.nonzero(scores >= spec.min_score)[0]
    raw = raw_boxes.reshape(-1, 16)[keep] / spec.input_px
    centre = raw[:, 0:2] + anchor_xy[keep]
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) + anchor_xy[keep][:, None, :]
    return [Detection(float(scores[i]), boxes[j], keypoints[j]) for j, i in enumerate(keep)]


def iou(box: FloatArray, others: FloatArray) -> FloatArray:
    """Intersection over union of one box (4,) against many (N, 4)."""
    lo = np.maximum(box[:2], others[:, :2])
    hi = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    ratio: FloatArray = (inter / np.maximum(area + areas - inter, 1e-9)).astype(np.float32)
    return ratio


def weighted_nms(candidates: list[Detection], threshold: float = NMS_IOU) -> list[Detection]:
    """MediaPipe's weighted NMS: each cluster becomes the score-weighted mean of its members."""
    remaining = sorted(candidates, key=lambda d: d.score, reverse=True)
    kept: list[Detection] = []
    while remaining:
        boxes = np.stack([d.box for d in remaining])
        cluster = np.nonzero(iou(remaining[0].box, boxes) > threshold)[0]
        cluster = np.union1d(cluster, [0])
        weights = np.array([remaining[i].score for i in cluster], dtype=np.float32)
        weights /= weights.sum()
        box = np.tensordot(weights, boxes[cluster], axes=1)
        kps = np.tensordot(weights, np.stack([remaining[i].keypoints for i in cluster]), axes=1)
        kept.append(Detection(remaining[0].score, box.astype(np.float32), kps.astype(np.float32)))
        members = set(cluster.tolist())
        remaining = [d for i, d in enumerate(remaining) if i not in members]
    return kept

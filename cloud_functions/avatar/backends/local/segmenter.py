"""SegmentationMasker: the face-mesh oval refined by the selfie-segmentation person mask.

The person model runs on a square region around the face only: it lights up cats and dogs too,
so it is trusted inside a detected face and nowhere else.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops

from avatar.backends.local.runtime import ModelRunner
from avatar.faces import Face
from avatar.imaging import contour_mask
from avatar.masking import feather_px

SEGMENTATION_MODEL = "selfie_segmentation"
SEGMENTATION_PX = 256
REGION_SCALE = 2.0  # the region around the face the person model sees, x the face's long side
MIN_COVERAGE = 0.35  # below this share of the oval marked "person", the model missed: use the oval
SOFT_LO, SOFT_HI = 0.2, 0.6  # person probabilities ramped to 0..1 over this band


class SegmentationMasker:
    """FaceMasker on the local selfie-segmentation model (one interpreter per thread)."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner

    def face_mask(self, image: Image.Image, face: Face) -> Image.Image:
        """A mode "L" mask of the image's size: the feathered oval where the person model agrees."""
        oval = contour_mask(image.size, face.contour, feather_px(face))
        region = face_region(face, image.size)
        oval_part = oval.crop(region)
        refined = ImageChops.multiply(oval_part, self.person_mask(image.crop(region)))
        if mass(refined) < MIN_COVERAGE * mass(oval_part):
            return oval
        oval.paste(refined, region[:2])
        return oval

    def person_mask(self, region: Image.Image) -> Image.Image:
        """The person probability of a region, ramped and resized back, as an "L" image."""
        rgb = region.convert("RGB").resize(
            (SEGMENTATION_PX, SEGMENTATION_PX), Image.Resampling.BILINEAR
        )
        tensor = np.asarray(rgb, dtype=np.float32)[None] / 255.0
        probability = self.runner.run(SEGMENTATION_MODEL, tensor)[0].reshape(SEGMENTATION_PX, -1)
        ramp = np.clip((probability - SOFT_LO) / (SOFT_HI - SOFT_LO), 0.0, 1.0)
        small = Image.fromarray((ramp * 255).astype(np.uint8), mode="L")
        return small.resize(region.size, Image.Resampling.BILINEAR)


def mass(mask: Image.Image) -> int:
    """The sum of a mask's values."""
    return int(np.asarray(mask).sum(dtype=np.int64))


def face_region(face: Face, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square around the face, REGION_SCALE x its long side, clipped to the image."""
    cx, cy = face.box.center
    half = REGION_SCALE * max(face.box.width, face.box.height) / 2
    left, top = max(0, round(cx - half)), max(0, round(cy - half))
    right, bottom = min(size[0], round(cx + half)), min(size[1], round(cy + half))
    return left, top, max(right, left + 1), max(bottom, top + 1)

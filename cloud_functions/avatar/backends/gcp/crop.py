"""The roll-aligned square crop a face is sent to the image model in, and the way back.

Pure Pillow geometry: one affine transform takes the crop out of the full image (rotation,
scale and translation in one resampling pass), its inverse puts the model's answer back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageChops

from avatar.faces import Face, Point

# How much of the face's surroundings the model sees: the crop's side over the face box's.
CONTEXT_SCALE = 2.0
MAX_CROP_PX = 1024
MIN_CROP_PX = 256


@dataclass(frozen=True)
class FaceCrop:
    """A square of `side` image pixels centred on `center`, turned by `roll_deg`, sampled
    into `size_px` x `size_px` crop pixels so that the face stands upright in the crop."""

    center: Point
    side: float
    roll_deg: float
    size_px: int

    @classmethod
    def around(cls, face: Face) -> FaceCrop:
        """The crop for `face`: its box, widened for context, at roughly its own resolution."""
        side = max(face.box.width, face.box.height) * CONTEXT_SCALE
        size_px = int(min(MAX_CROP_PX, max(MIN_CROP_PX, round(side))))
        return cls(face.box.center, side, face.roll_deg, size_px)

    def _crop_to_image(self) -> tuple[float, float, float, float, float, float]:
        k = self.side / self.size_px
        cos_r, sin_r = math.cos(math.radians(self.roll_deg)), math.sin(math.radians(self.roll_deg))
        half = self.size_px / 2
        cx, cy = self.center
        return (
            k * cos_r,
            -k * sin_r,
            cx - half * k * (cos_r - sin_r),
            k * sin_r,
            k * cos_r,
            cy - half * k * (sin_r + cos_r),
        )

    def _image_to_crop(self, origin: tuple[int, int]) -> tuple[float, ...]:
        k = self.size_px / self.side
        cos_r, sin_r = math.cos(math.radians(self.roll_deg)), math.sin(math.radians(self.roll_deg))
        half = self.size_px / 2
        dx, dy = origin[0] - self.center[0], origin[1] - self.center[1]
        return (
            k * cos_r,
            k * sin_r,
            half + k * (cos_r * dx + sin_r * dy),
            -k * sin_r,
            k * cos_r,
            half + k * (-sin_r * dx + cos_r * dy),
        )

    def extract(self, image: Image.Image) -> Image.Image:
        """The upright face crop of `image` (areas beyond the image's edge are black)."""
        size = (self.size_px, self.size_px)
        return image.transform(
            size, Image.Transform.AFFINE, self._crop_to_image(), Image.Resampling.BILINEAR
        )

    def footprint(self, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The bounding box (left, top, right, bottom) of the turned square, within the image."""
        a, b, c, d, e, f = self._crop_to_image()
        n = self.size_px
        corners = [(a * x + b * y + c, d * x + e * y + f) for x in (0, n) for y in (0, n)]
        left = max(0, math.floor(min(x for x, _ in corners)))
        top = max(0, math.floor(min(y for _, y in corners)))
        right = min(image_size[0], math.ceil(max(x for x, _ in corners)))
        bottom = min(image_size[1], math.ceil(max(y for _, y in corners)))
        return left, top, max(left, right), max(top, bottom)

    def blend_back(
        self, image: Image.Image, generated: Image.Image, mask: Image.Image
    ) -> Image.Image:
        """`image` with `generated` (the crop, any size) blended in through `mask`.

        Where `mask` is 0 the result is `image`'s own pixels, bit for bit.
        """
        box = self.footprint(image.size)
        size = (box[2] - box[0], box[3] - box[1])
        if size[0] == 0 or size[1] == 0:
            return image.copy()
        crop = generated.convert("RGB").resize(
            (self.size_px, self.size_px), Image.Resampling.BILINEAR
        )
        to_crop = self._image_to_crop((box[0], box[1]))
        warped = crop.transform(size, Image.Transform.AFFINE, to_crop, Image.Resampling.BILINEAR)
        inside = Image.new("L", crop.size, 255).transform(
            size, Image.Transform.AFFINE, to_crop, Image.Resampling.NEAREST
        )
        alpha = ImageChops.multiply(mask.crop(box), inside)
        result = image.copy()
        result.paste(Image.composite(warped, image.crop(box), alpha), box[:2])
        return result

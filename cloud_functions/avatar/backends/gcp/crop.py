"""The roll-aligned square crop a face is sent to the image model in, and the way back.

Pure Pillow geometry: one affine transform takes the crop out of the full image (rotation,
scale and translation in one resampling pass), its inverse puts the model's answer back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw

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

    def _image_to_generated(
        self, origin: tuple[int, int], generated_size: tuple[int, int]
    ) -> tuple[float, ...]:
        """Image pixels (offset by `origin`) to pixels of the model's answer, whatever its size."""
        k = self.size_px / self.side
        sx, sy = generated_size[0] / self.size_px, generated_size[1] / self.size_px
        cos_r, sin_r = math.cos(math.radians(self.roll_deg)), math.sin(math.radians(self.roll_deg))
        half = self.size_px / 2
        dx, dy = origin[0] - self.center[0], origin[1] - self.center[1]
        return (
            sx * k * cos_r,
            sx * k * sin_r,
            sx * (half + k * (cos_r * dx + sin_r * dy)),
            -sy * k * sin_r,
            sy * k * cos_r,
            sy * (half + k * (-sin_r * dx + cos_r * dy)),
        )

    def extract(self, image: Image.Image) -> Image.Image:
        """The upright face crop of `image` (areas beyond the image's edge are black).

        Pillow's bilinear affine costs ~60 ns a pixel; instead the region is cut out, shrunk
        by resize (fast) when the crop is smaller than the face's own pixels, then turned with
        nearest sampling at 1:1, whose stair-steps the model's own resampling does not notice.
        """
        left, top, right, bottom = self._bounds(image.size)
        if right <= left or bottom <= top:
            return Image.new(image.mode, (self.size_px, self.size_px))
        region = image.crop((left, top, right, bottom))
        scale = min(1.0, self.size_px / self.side)
        if scale < 1.0:
            size = (max(1, round(region.width * scale)), max(1, round(region.height * scale)))
            region = region.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        a, b, c, d, e, f = self._crop_to_image()
        sx, sy = region.width / (right - left), region.height / (bottom - top)
        to_region = (sx * a, sx * b, sx * (c - left), sy * d, sy * e, sy * (f - top))
        size_px = (self.size_px, self.size_px)
        return region.transform(
            size_px, Image.Transform.AFFINE, to_region, Image.Resampling.NEAREST
        )

    def _bounds(self, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The turned square's bounding box, clipped to the image."""
        xs, ys = zip(*self.corners(), strict=True)
        return (
            max(0, math.floor(min(xs))),
            max(0, math.floor(min(ys))),
            min(image_size[0], math.ceil(max(xs))),
            min(image_size[1], math.ceil(max(ys))),
        )

    def corners(self) -> list[Point]:
        """The turned square's corners in image pixels, clockwise from the crop's top left."""
        a, b, c, d, e, f = self._crop_to_image()
        n = self.size_px
        return [(a * x + b * y + c, d * x + e * y + f) for x, y in ((0, 0), (n, 0), (n, n), (0, n))]

    def blend_back(
        self, image: Image.Image, generated: Image.Image, mask: Image.Image
    ) -> Image.Image:
        """`image` with `generated` (the crop, any size) blended in through `mask`.

        Only the mask's bounding box is resampled, in one pass straight from the model's
        answer; where `mask` is 0, or outside the crop, the result is `image`'s own pixels.
        """
        box = mask.getbbox()
        if box is None:
            return image.copy()
        size = (box[2] - box[0], box[3] - box[1])
        to_generated = self._image_to_generated((box[0], box[1]), generated.size)
        rgb = generated if generated.mode == "RGB" else generated.convert("RGB")
        warped = rgb.transform(
            size, Image.Transform.AFFINE, to_generated, Image.Resampling.BILINEAR
        )
        inside = Image.new("L", size, 0)
        ImageDraw.Draw(inside).polygon([(x - box[0], y - box[1]) for x, y in self.corners()], 255)
        alpha = ImageChops.multiply(mask.crop(box), inside)
        result = image.copy()
        result.paste(Image.composite(warped, image.crop(box), alpha), box[:2])
        return result

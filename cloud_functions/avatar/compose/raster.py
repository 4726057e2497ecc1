"""Anti-aliased drawing on a local patch: crisp parts supersampled, soft parts small and blurred."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

from avatar.compose.geometry import FaceFrame, FloatArray

RGBA = tuple[int, int, int, int]


@dataclass(frozen=True)
class PatchBox:
    """An integer pixel box of the image: left, top, right, bottom (exclusive)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.right - self.left, self.bottom - self.top)

    @property
    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)


def patch_box(points: FloatArray, image_size: tuple[int, int], pad: float) -> PatchBox | None:
    """The box around image points plus padding, clipped to the image; None when off-image."""
    left = max(int(np.floor(points[:, 0].min() - pad)), 0)
    top = max(int(np.floor(points[:, 1].min() - pad)), 0)
    right = min(int(np.ceil(points[:, 0].max() + pad)), image_size[0])
    bottom = min(int(np.ceil(points[:, 1].max() + pad)), image_size[1])
    if right - left < 2 or bottom - top < 2:
        return None
    return PatchBox(left, top, right, bottom)


def stroke(points: FloatArray, start_width: float, end_width: float) -> FloatArray:
    """A brush stroke along a polyline (tapering from start to end width), as a closed polygon."""
    d = np.gradient(points, axis=0)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / (np.hypot(d[:, 0], d[:, 1])[:, None] + 1e-9)
    half = np.linspace(start_width, end_width, len(points))[:, None] / 2
    return np.concatenate([points + normal * half, (points - normal * half)[::-1]])


def offset_polygon(points: FloatArray, distance: float) -> FloatArray:
    """A closed polygon grown outwards by `distance` (shrunk when negative), vertex by vertex."""
    d = np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)
    normal = np.stack([d[:, 1], -d[:, 0]], axis=1) / (np.hypot(d[:, 0], d[:, 1])[:, None] + 1e-9)
    x, y = points[:, 0], points[:, 1]
    area = float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))
    # (d_y, -d_x) points outwards for a clockwise-on-screen (positive area, y down) polygon.
    return points + normal * (distance if area > 0 else -distance)


class Sketch:
    """Crisp shapes drawn onto a supersampled copy of the patch, then box-filtered back down.

    Drawing onto the (nearest-neighbour enlarged) photo itself, rather than onto a transparent
    layer, lets semi-transparent shapes blend in order; untouched pixels come back bit-exact.
    """

    def __init__(self, patch: Image.Image, box: PatchBox, frame: FaceFrame, scale: int) -> None:
        self.box, self.frame, self.scale = box, frame, scale
        size = (patch.width * scale, patch.height * scale)
        self.canvas = patch.resize(size, Image.Resampling.NEAREST)
        self.draw = ImageDraw.Draw(self.canvas, "RGBA")
        self.draw_opaque = ImageDraw.Draw(self.canvas)  # no blending: several times faster

    def _xy(self, local: FloatArray) -> list[tuple[float, float]]:
        pts = (self.frame.to_image(local) - (self.box.left, self.box.top)) * self.scale
        return list(map(tuple, pts.tolist()))

    def _fill(self, xy: list[tuple[float, float]], color: RGBA) -> None:
        if color[3] == 255:
            self.draw_opaque.polygon(xy, fill=color[:3])
        else:
            self.draw.polygon(xy, fill=color)

    def polygon(
        self, local: FloatArray, fill: RGBA, outline: RGBA | None = None, width: float = 0.0
    ) -> None:
        """A filled polygon in face units; an outline `width` units thick is centred on its edge."""
        if outline is not None and width > 0:
            self._fill(self._xy(offset_polygon(local, width / 2)), outline)
            local = offset_polygon(local, -width / 2)
        self._fill(self._xy(local), fill)

    def line(
        self, local: FloatArray, color: RGBA, width: float, end_width: float | None = None
    ) -> None:
        """An open polyline in face units, `width` face units thick, tapering to `end_width`."""
        end = width if end_width is None else end_width
        self._fill(self._xy(stroke(local, width, end)), color)

    def dot(self, x: float, y: float, radius: float, color: RGBA) -> None:
        """A filled circle in face units."""
        (cx, cy), r = self._xy(np.array([[x, y]]))[0], radius * self.frame.unit * self.scale
        self.draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)

    def result(self) -> Image.Image:
        """The patch with everything drawn, at its original size."""
        return self.canvas.reduce(self.scale)


class SoftMasks:
    """Soft-edged masks (fur markings, keep-out zones), drawn small and blurred over a box.

    They stay small (`shrink` times smaller than the patch): callers combine them at that size and
    enlarge only the final result, which keeps the per-pixel work at full size to a minimum.
    """

    def __init__(self, box: PatchBox, frame: FaceFrame, shrink: int) -> None:
        self.box, self.frame, self.shrink = box, frame, shrink
        w, h = box.size
        self.small = (max((w + shrink - 1) // shrink, 1), max((h + shrink - 1) // shrink, 1))

    def mask(self, shapes: Sequence[FloatArray], blur: float) -> npt.NDArray[np.float32]:
        """Union of polygons (face units) blurred by `blur` units, small, as floats in [0, 1]."""
        # Drawn at twice the small size and halved: smooth edges even where the blur is tiny.
        img = Image.new("L", (self.small[0] * 2, self.small[1] * 2), 0)
        draw = ImageDraw.Draw(img)
        for local in shapes:
            pts = (self.frame.to_image(local) - (self.box.left, self.box.top)) * (2 / self.shrink)
            draw.polygon(list(map(tuple, pts.tolist())), fill=255)
        img = img.reduce(2)
        radius = blur * self.frame.unit / self.shrink
        if radius >= 0.3:
            img = img.filter(ImageFilter.GaussianBlur(radius))
        return np.asarray(img, dtype=np.float32) * np.float32(1 / 255)

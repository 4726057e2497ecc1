"""Anti-aliased drawing on a local patch: crisp parts supersampled, soft parts small and blurred."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

from avatar.compose.geometry import FaceFrame, FloatArray

RGBA = tuple[int, int, int, int]
_BILINEAR = Image.Resampling.BILINEAR


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
    d = _gradient(points)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / (np.hypot(d[:, 0], d[:, 1])[:, None] + 1e-9)
    half = _half_widths(start_width, end_width, len(points))
    return np.concatenate([points + normal * half, (points - normal * half)[::-1]])


def _gradient(points: FloatArray) -> FloatArray:
    """np.gradient(points, axis=0) for two or more points, with exactly its arithmetic."""
    d = np.empty_like(points, dtype=np.float64)
    d[1:-1] = (points[2:] - points[:-2]) / 2.0
    d[0] = points[1] - points[0]
    d[-1] = points[-1] - points[-2]
    return d


@lru_cache(maxsize=64)
def _half_widths(start_width: float, end_width: float, n: int) -> FloatArray:
    """Half a tapering stroke's width at each of n points, as a column (shared, read-only)."""
    half: FloatArray = np.linspace(start_width, end_width, n)[:, None] / 2
    half.setflags(write=False)
    return half


def offset_polygon(points: FloatArray, distance: float) -> FloatArray:
    """A closed polygon grown outwards by `distance` (shrunk when negative), vertex by vertex."""
    # Each vertex's next minus its previous neighbour (np.roll by -1 and 1, without its overhead).
    d = np.concatenate([points[1:], points[:1]]) - np.concatenate([points[-1:], points[:-1]])
    normal = np.stack([d[:, 1], -d[:, 0]], axis=1) / (np.hypot(d[:, 0], d[:, 1])[:, None] + 1e-9)
    x, y = points[:, 0], points[:, 1]
    y_next, x_next = np.concatenate([y[1:], y[:1]]), np.concatenate([x[1:], x[:1]])
    area = float(np.dot(x, y_next) - np.dot(x_next, y))
    # (d_y, -d_x) points outwards for a clockwise-on-screen (positive area, y down) polygon.
    grown: FloatArray = points + normal * (distance if area > 0 else -distance)
    return grown


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

    def _xy(self, local: FloatArray) -> list[float]:
        """Face-unit points as canvas pixels, flat (x0, y0, x1, y1, ...) as ImageDraw takes them."""
        pts = (self.frame.to_image(local) - (self.box.left, self.box.top)) * self.scale
        flat: list[float] = pts.ravel().tolist()
        return flat

    def _fill(self, xy: list[float], color: RGBA) -> None:
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
        (cx, cy), r = self._xy(np.array([[x, y]])), radius * self.frame.unit * self.scale
        self.draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)

    def result(self) -> Image.Image:
        """The patch with everything drawn, at its original size."""
        return self.canvas.reduce(self.scale)


class SoftMasks:
    """Soft-edged masks (fur markings, keep-out zones), drawn small and blurred over a box.

    They stay small (`shrink` times smaller than the patch): callers combine them at that size and
    enlarge only the final result, which keeps the per-pixel work at full size to a minimum.
    With `keep`, each mask is kept (read-only) by its shapes and blur and handed out again when
    asked for the same: animals of a pack share some markings' shapes and every keep-clear zone.
    """

    def __init__(self, box: PatchBox, frame: FaceFrame, shrink: int, keep: bool = False) -> None:
        self.box, self.frame, self.shrink = box, frame, shrink
        w, h = box.size
        self.small = (max((w + shrink - 1) // shrink, 1), max((h + shrink - 1) // shrink, 1))
        self._kept: dict[tuple[object, ...], npt.NDArray[np.float32]] | None = {} if keep else None
        self._lock = threading.Lock()

    def mask(self, shapes: Sequence[FloatArray], blur: float) -> npt.NDArray[np.float32]:
        """Union of polygons (face units) blurred by `blur` units, small, as floats in [0, 1]."""
        if self._kept is None:
            return self._draw(shapes, blur)
        key = (blur, *((s.shape, np.asarray(s, dtype=np.float64).tobytes()) for s in shapes))
        with self._lock:
            found = self._kept.get(key)
        if found is not None:
            return found
        drawn = self._draw(shapes, blur)
        drawn.setflags(write=False)
        with self._lock:
            if len(self._kept) >= 64:  # more shapes than all animals' markings: start afresh
                self._kept.clear()
            return self._kept.setdefault(key, drawn)

    def _draw(self, shapes: Sequence[FloatArray], blur: float) -> npt.NDArray[np.float32]:
        """The mask itself, drawn afresh."""
        # Drawn at twice the small size and halved: smooth edges even where the blur is tiny.
        img = Image.new("L", (self.small[0] * 2, self.small[1] * 2), 0)
        draw = ImageDraw.Draw(img)
        for local in shapes:
            pts = (self.frame.to_image(local) - (self.box.left, self.box.top)) * (2 / self.shrink)
            draw.polygon(pts.ravel().tolist(), fill=255)
        img = img.reduce(2)
        radius = blur * self.frame.unit / self.shrink
        if radius >= 0.3:
            img = img.filter(ImageFilter.GaussianBlur(radius))
        return np.asarray(img, dtype=np.float32) * np.float32(1 / 255)


@contextmanager
def sketch_over(
    image: Image.Image, frame: FaceFrame, extent: FloatArray, origin: tuple[int, int] = (0, 0)
) -> Iterator[Sketch | None]:
    """A supersampled sketch over just the part of `image` that `extent` (face units) covers.

    `origin` is where the image's top-left corner lies in the frame's pixels (a layer cut from a
    larger picture). Supersampling only where crisp parts go keeps large faces fast; the drawing
    is pasted back when the block ends. None when the extent lies off the image.
    """
    points = frame.to_image(extent) - origin
    part = patch_box(points, image.size, pad=0.05 * frame.unit + 2)
    if part is None:
        yield None
        return
    box = PatchBox(
        part.left + origin[0], part.top + origin[1], part.right + origin[0], part.bottom + origin[1]
    )
    sketch = Sketch(image.crop(part.as_tuple), box, frame, scale=3 if frame.unit < 60 else 2)
    yield sketch
    image.paste(sketch.result(), (part.left, part.top))


def enlarge(small: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A smooth map enlarged: bilinear to half the size, then doubled (a fraction of the cost)."""
    half = (max(size[0] // 2, 1), max(size[1] // 2, 1))
    if min(half) < 64 or half[0] <= small.width:
        return small.resize(size, _BILINEAR)
    return small.resize(half, _BILINEAR).resize(size, Image.Resampling.NEAREST)

"""Fur painting: the animal's colours laid over the skin so its shading and texture still show.

The per-pixel work runs as a handful of Pillow passes (lookup tables, multiply, composite) on
8-bit images: several times faster than the same arithmetic in float numpy on a 1600 px photo.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageChops

U8Array = npt.NDArray[np.uint8]
F32Array = npt.NDArray[np.float32]

_GRAIN_ONE = 230  # the 8-bit grain value that stands for 1.0
_SHADE_ONE = 128  # the 8-bit shade value that stands for 1.0 (room above it for highlights)
_DOUBLE = [min(2 * v, 255) for v in range(256)] * 3


@lru_cache(maxsize=1)
def _grain_tile() -> U8Array:
    """A 128 px tileable grain of short vertical strands, 1.0 +- 0.08 in 8 bits (fixed seed)."""
    rng = np.random.default_rng(20261121)
    noise = rng.standard_normal((128, 128))
    # Smearing along y (wrapping, so the tile repeats seamlessly) turns speckle into strands.
    strands = np.sum([np.roll(noise, k, axis=0) for k in range(-4, 5)], axis=0)
    strands = (strands - strands.mean()) / np.abs(strands).max()
    return np.asarray(np.round(_GRAIN_ONE * (1.0 + 0.08 * strands)), dtype=np.uint8)


def fur_grain(size: tuple[int, int], unit_px: float) -> Image.Image:
    """The strand grain ("L", 230 = 1.0) tiled over `size`, its strands scaled to the face."""
    tile = _grain_tile()
    step = max(round(unit_px / 40), 1)  # about 40 strands across the eyes' distance
    if step > 1:
        tile = np.repeat(np.repeat(tile, step, axis=0), step, axis=1)
    w, h = size
    reps = (h // tile.shape[0] + 1, w // tile.shape[1] + 1)
    return Image.fromarray(np.ascontiguousarray(np.tile(tile, reps)[:h, :w]))


def _median(lum: Image.Image, alpha: Image.Image) -> float:
    """Median luminance where alpha is over 30%, from the masked histogram."""
    hist = lum.histogram(mask=alpha.point(lambda a: 255 if a > 77 else 0))
    total = sum(hist)
    if total == 0:
        return 128.0
    cum = np.cumsum(hist)
    return float(np.searchsorted(cum, total / 2))


def shade_table(ref: float) -> list[int]:
    """Luminance -> 8-bit shade: brightness relative to the skin's median, softened a little."""
    v = np.arange(256, dtype=np.float64)
    shade = np.clip(1.0 + (v / max(ref, 1.0) - 1.0) * 0.85, 0.2, 1.7)
    scaled = shade * _SHADE_ONE * 255 / _GRAIN_ONE
    return [int(x) for x in np.clip(np.round(scaled), 0, 255)]


def paint_fur(
    region: Image.Image, fur: Image.Image, alpha: Image.Image, grain: Image.Image
) -> Image.Image:
    """Fur colours (RGB) blended into a region by alpha ("L"), shaded by the skin's luminance."""
    lum = region.convert("L")
    shade = ImageChops.multiply(lum.point(shade_table(_median(lum, alpha))), grain)
    target = ImageChops.multiply(fur, Image.merge("RGB", (shade, shade, shade))).point(_DOUBLE)
    return Image.composite(target, region, alpha)

"""Fur painting: the animal's colours laid over the skin so its shading and texture still show."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

U8Array = npt.NDArray[np.uint8]
F32Array = npt.NDArray[np.float32]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@lru_cache(maxsize=1)
def _fur_tile() -> F32Array:
    """A 128 px tileable grain of short vertical strands, about 1.0 +- 0.08 (fixed seed)."""
    rng = np.random.default_rng(20261121)
    noise = rng.standard_normal((128, 128)).astype(np.float32)
    # Smearing along y (wrapping, so the tile repeats seamlessly) turns speckle into strands.
    strands = sum(np.roll(noise, k, axis=0) for k in range(-4, 5)) / 3.0
    strands -= strands.mean()
    return 1.0 + 0.08 * strands / np.abs(strands).max()


def fur_grain(shape: tuple[int, int], unit_px: float) -> F32Array:
    """The strand grain tiled over `shape`, its strands scaled to the face (1 +- 0.08)."""
    tile = _fur_tile()
    step = max(int(round(unit_px / 40)), 1)  # about 40 strands across the eyes' distance
    if step > 1:
        tile = np.repeat(np.repeat(tile, step, axis=0), step, axis=1)
    reps = (shape[0] // tile.shape[0] + 1, shape[1] // tile.shape[1] + 1)
    return np.tile(tile, reps)[: shape[0], : shape[1]]


def paint_fur(pixels: U8Array, fur: F32Array, alpha: F32Array, grain: F32Array | None = None) -> U8Array:
    """Blends fur colours (H, W, 3, 0-255) into pixels by alpha, modulated by the skin's own luminance."""
    src = pixels.astype(np.float32)
    lum = src @ _LUMA
    weight = alpha > 0.3
    ref = float(np.median(lum[weight])) if weight.any() else float(lum.mean())
    shade = 1.0 + (lum / max(ref, 1.0) - 1.0) * 0.85
    np.clip(shade, 0.2, 1.7, out=shade)
    if grain is not None:
        shade *= grain
    target = fur * shade[..., None]
    out = src + (target - src) * alpha[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)

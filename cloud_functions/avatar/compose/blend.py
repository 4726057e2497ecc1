"""Fur painting: the animal's colours laid over the skin so its shading and texture still show.

The fur is applied as a per-channel *gain* worked out on a small copy of the face and enlarged:
out = src * gain with gain = fur * shade / blur(src), so a pixel ends up as
fur * shade * (src / blur(src)) -- the fur's colour, the face's broad shading and the photo's own
fine detail (pores, wrinkles, hair). Only the final multiply runs at full size, as two Pillow
passes, which keeps a face at 1600 px within a few milliseconds whatever its size.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageChops

F32Array = npt.NDArray[np.float32]

GAIN_ONE = 127.5  # the 8-bit gain value that stands for 1.0 (so gains reach 2.0)
_DOUBLE = [min(2 * v, 255) for v in range(256)] * 3
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luma(src: F32Array) -> F32Array:
    """The brightness (H, W) of RGB pixels (H, W, 3)."""
    return np.asarray(src @ _LUMA, dtype=np.float32)


def face_brightness(lum: F32Array, weight: F32Array) -> float:
    """The median brightness where `weight` (0-1) marks the face (all of it when none does)."""
    inside = lum[weight > 0.5]
    return float(np.median(inside)) if inside.size else float(lum.mean())


def fur_gain(src: F32Array, fur: F32Array, alpha: F32Array, weight: F32Array) -> F32Array:
    """Per-channel gain (H, W, 3) taking small src pixels towards fur colours by alpha.

    `weight` (0-1) marks the face, whose median brightness is the shade's reference.
    """
    lum = luma(src)
    ref = face_brightness(lum, weight)
    # Broad shading relative to the face's median, softened a little so fur reads as one colour.
    shade = np.clip(1.0 + (lum / max(ref, 1.0) - 1.0) * 0.85, 0.2, 1.7)
    wanted = fur * shade[..., None] / np.maximum(src, 6.0)
    gain = 1.0 + (wanted - 1.0) * alpha[..., None]
    return np.asarray(np.clip(gain, 0.0, 2.0), dtype=np.float32)


def encode_gain(gain: F32Array) -> Image.Image:
    """A gain map (H, W, 3, 0-2) as an RGB image, GAIN_ONE standing for 1.0."""
    return Image.fromarray(np.asarray(np.round(gain * GAIN_ONE), dtype=np.uint8))


def apply_gain(region: Image.Image, gain: Image.Image) -> Image.Image:
    """region * gain for an encoded gain image of the same size (Pillow multiply, then x2)."""
    return ImageChops.multiply(region, gain).point(_DOUBLE)

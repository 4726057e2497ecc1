"""One face into one animal: fur painted inside the face mask, then ears and features drawn on top."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from avatar.compose.animals import STYLES, Style
from avatar.compose.blend import F32Array, fur_grain, paint_fur
from avatar.compose.ears import both_ears, draw_ear
from avatar.compose.features import draw_nose, draw_teeth, draw_whiskers
from avatar.compose.geometry import FaceFrame, FloatArray, face_frame
from avatar.compose.markings import keep_clear, markings_for
from avatar.compose.raster import PatchBox, Sketch, SoftMasks, patch_box
from avatar.errors import InvalidRequest
from avatar.faces import Face


def style_for(animal: str) -> Style:
    """The style of an animal id; InvalidRequest for an unknown one."""
    style = STYLES.get(animal.strip().lower())
    if style is None:
        msg = f"unknown animal {animal!r}; choose one of {', '.join(sorted(STYLES))}"
        raise InvalidRequest(msg)
    return style


def character_outline(frame: FaceFrame, style: Style, contour: FloatArray) -> FloatArray:
    """Every point the character may touch (face outline, ears, whiskers), in image pixels."""
    right, left = both_ears(frame, style)
    reach = 1.15 + 0.25 * frame.half_width  # the whiskers' tips
    extra = np.array([[-reach, frame.nose[1] + 0.4], [reach, frame.nose[1] + 0.4], [0.0, frame.chin + 0.1]])
    pts = [right.outer, left.outer, extra]
    if len(contour):
        pts.append(frame.to_local(contour))
    return frame.to_image(np.concatenate(pts))


def compose_face(image: Image.Image, face: Face, mask: Image.Image, animal: str) -> Image.Image:
    """A copy of an RGB image with one face turned into the animal; untouched far from the face."""
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    _paint_into(out, face, mask.convert("L"), style_for(animal))
    return out


def _paint_into(image: Image.Image, face: Face, mask: Image.Image, style: Style) -> None:
    """Paints one face's character into `image` in place, touching only the patch around it."""
    frame = face_frame(face)
    box = patch_box(character_outline(frame, style, face.contour), image.size, pad=0.1 * frame.unit)
    if box is None:
        return
    patch = _paint_patch(image.crop(box.as_tuple), mask.crop(box.as_tuple), box, frame, style)
    image.paste(patch, (box.left, box.top))


def _paint_patch(patch: Image.Image, mask: Image.Image, box: PatchBox, frame: FaceFrame, style: Style) -> Image.Image:
    furred = Image.fromarray(_fur_pixels(np.asarray(patch), np.asarray(mask), box, frame, style))
    scale = 3 if frame.unit < 60 else 2
    sketch = Sketch(furred, box, frame, scale)
    for ear in both_ears(frame, style):
        draw_ear(sketch, ear, style)
    draw_teeth(sketch, frame, style)
    draw_whiskers(sketch, frame, style)
    draw_nose(sketch, frame, style)
    return sketch.result()


def _fur_pixels(pixels: np.ndarray, mask: np.ndarray, box: PatchBox, frame: FaceFrame, style: Style) -> np.ndarray:  # type: ignore[type-arg]
    """The patch's pixels with fur colours and markings painted inside the face mask."""
    soft = SoftMasks(box, frame)
    h, w = pixels.shape[:2]
    fur: F32Array = np.empty((h, w, 3), dtype=np.float32)
    fur[...] = np.asarray(style.fur, dtype=np.float32)
    opacity: F32Array = np.full((h, w), style.fur_opacity, dtype=np.float32)
    for marking in markings_for(frame, style):
        m = soft.mask(marking.shapes, marking.blur)
        fur += (np.asarray(marking.color, dtype=np.float32) - fur) * m[..., None]
        opacity += (marking.opacity - opacity) * m
    for clear in keep_clear(frame):
        opacity *= 1.0 - clear.opacity * soft.mask(clear.shapes, clear.blur)
    alpha = opacity * (mask.astype(np.float32) * np.float32(1 / 255))
    return paint_fur(pixels, fur, alpha, fur_grain((h, w), frame.unit))


def compose_faces(image: Image.Image, faces: Sequence[Face], masks: Sequence[Image.Image], animal: str) -> Image.Image:
    """Every face turned into the animal, largest first so smaller faces in front stay on top."""
    style = style_for(animal)
    if len(faces) != len(masks):
        msg = f"{len(faces)} faces but {len(masks)} masks"
        raise InvalidRequest(msg)
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    for i in sorted(range(len(faces)), key=lambda i: -faces[i].box.area):
        _paint_into(out, faces[i], masks[i].convert("L"), style)
    return out

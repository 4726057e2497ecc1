"""One face into one animal: fur painted inside the face mask, then ears and features on top."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageChops

from avatar.compose.animals import STYLES, Style
from avatar.compose.blend import F32Array, fur_grain, paint_fur
from avatar.compose.ears import EAR_OUTLINE, both_ears, draw_ear
from avatar.compose.features import draw_nose, draw_teeth, draw_whiskers
from avatar.compose.geometry import FaceFrame, FloatArray, face_frame
from avatar.compose.markings import keep_clear, markings_for
from avatar.compose.raster import PatchBox, Sketch, SoftMasks, offset_polygon, patch_box
from avatar.errors import InvalidRequest
from avatar.faces import Face

_BILINEAR = Image.Resampling.BILINEAR


def style_for(animal: str) -> Style:
    """The style of an animal id; InvalidRequest for an unknown one."""
    style = STYLES.get(animal.strip().lower())
    if style is None:
        msg = f"unknown animal {animal!r}; choose one of {', '.join(sorted(STYLES))}"
        raise InvalidRequest(msg)
    return style


def character_outline(frame: FaceFrame, style: Style, contour: npt.ArrayLike) -> FloatArray:
    """Every point the character may touch (face outline, ears, whiskers), in image pixels."""
    right, left = both_ears(frame, style)
    reach = 1.15 + 0.25 * frame.half_width  # the whiskers' tips
    extra = np.array(
        [[-reach, frame.nose[1] + 0.4], [reach, frame.nose[1] + 0.4], [0.0, frame.chin + 0.1]]
    )
    pts = [right.outer, left.outer, extra]
    outline = np.asarray(contour, dtype=np.float64).reshape(-1, 2)
    if len(outline):
        pts.append(frame.to_local(outline))
    return frame.to_image(np.concatenate(pts))


def ear_outlines(face: Face, animal: str) -> list[FloatArray]:
    """The closed outlines of the two ears, outline stroke included, in image pixels."""
    frame = face_frame(face)
    return [
        frame.to_image(offset_polygon(ear.outer, EAR_OUTLINE))
        for ear in both_ears(frame, style_for(animal))
    ]


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


def _paint_patch(
    patch: Image.Image, mask: Image.Image, box: PatchBox, frame: FaceFrame, style: Style
) -> Image.Image:
    _paint_fur(patch, mask, box, frame, style)
    sketch = Sketch(patch, box, frame, scale=3 if frame.unit < 60 else 2)
    for ear in both_ears(frame, style):
        draw_ear(sketch, ear, style)
    draw_teeth(sketch, frame, style)
    draw_whiskers(sketch, frame, style)
    draw_nose(sketch, frame, style)
    return sketch.result()


def _paint_fur(
    patch: Image.Image, mask: Image.Image, box: PatchBox, frame: FaceFrame, style: Style
) -> None:
    """Paints fur colours and markings into the patch (in place), inside the face mask only."""
    bbox = mask.getbbox()
    if bbox is None:
        return
    sub = PatchBox(box.left + bbox[0], box.top + bbox[1], box.left + bbox[2], box.top + bbox[3])
    soft = SoftMasks(sub, frame, shrink=int(min(max(round(frame.unit / 36), 1), 4)))
    fur, opacity = _fur_maps(soft, frame, style)
    size = sub.size
    fur_img = Image.fromarray(np.asarray(np.clip(fur + 0.5, 0, 255), dtype=np.uint8)).resize(
        size, _BILINEAR
    )
    opacity_img = Image.fromarray(
        np.asarray(np.clip(opacity * 255 + 0.5, 0, 255), dtype=np.uint8)
    ).resize(size, _BILINEAR)
    alpha = ImageChops.multiply(opacity_img, mask.crop(bbox))
    painted = paint_fur(patch.crop(bbox), fur_img, alpha, fur_grain(size, frame.unit))
    patch.paste(painted, bbox[:2])


def _fur_maps(soft: SoftMasks, frame: FaceFrame, style: Style) -> tuple[F32Array, F32Array]:
    """Small maps of the fur's colour (H, W, 3) and opacity (H, W): base, markings, clear zones."""
    w, h = soft.small
    fur: F32Array = np.empty((h, w, 3), dtype=np.float32)
    fur[...] = np.asarray(style.fur, dtype=np.float32)
    opacity: F32Array = np.full((h, w), style.fur_opacity, dtype=np.float32)
    for marking in markings_for(frame, style):
        m = soft.mask(marking.shapes, marking.blur)
        fur += (np.asarray(marking.color, dtype=np.float32) - fur) * m[..., None]
        opacity += (marking.opacity - opacity) * m
    for clear in keep_clear(frame):
        opacity *= 1.0 - clear.opacity * soft.mask(clear.shapes, clear.blur)
    return fur, opacity


def compose_faces(
    image: Image.Image, faces: Sequence[Face], masks: Sequence[Image.Image], animal: str
) -> Image.Image:
    """Every face turned into the animal, largest first so smaller faces in front stay on top."""
    style = style_for(animal)
    if len(faces) != len(masks):
        msg = f"{len(faces)} faces but {len(masks)} masks"
        raise InvalidRequest(msg)
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    for i in sorted(range(len(faces)), key=lambda i: -faces[i].box.area):
        mask = masks[i] if masks[i].mode == "L" else masks[i].convert("L")
        _paint_into(out, faces[i], mask, style)
    return out

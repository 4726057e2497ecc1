"""One face into one animal: fur painted inside the face mask, then ears and features on top."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
from PIL import Image

from avatar.compose.animals import STYLES, Style
from avatar.compose.blend import F32Array, apply_gain, encode_gain, fur_gain
from avatar.compose.ears import EAR_OUTLINE, EarShape, both_ears, draw_ear
from avatar.compose.features import draw_nose, draw_teeth, draw_whiskers, muzzle_extent
from avatar.compose.geometry import FaceFrame, FloatArray, face_frame
from avatar.compose.markings import keep_clear, markings_for
from avatar.compose.prepared import PreparedFace, prepare
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
    outline = np.asarray(contour, dtype=np.float64).reshape(-1, 2)
    local = frame.to_local(outline) if len(outline) else outline
    return _outline(frame, both_ears(frame, style), local)


def _outline(frame: FaceFrame, ears: tuple[EarShape, EarShape], contour: FloatArray) -> FloatArray:
    """character_outline from the ears and the face outline already in face units."""
    right, left = ears
    reach = 1.15 + 0.25 * frame.half_width  # the whiskers' tips
    extra = np.array(
        [[-reach, frame.nose[1] + 0.4], [reach, frame.nose[1] + 0.4], [0.0, frame.chin + 0.1]]
    )
    pts = [right.outer, left.outer, extra]
    if len(contour):
        pts.append(contour)
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
    return compose_faces(image, [face], [mask], animal)


def _paint_into(
    image: Image.Image, prepared: PreparedFace, mask: Image.Image, style: Style
) -> None:
    """Paints one face's character into `image` in place, touching only the region around it."""
    frame = prepared.frame
    pad = 0.1 * frame.unit
    ears = both_ears(frame, style)
    box = patch_box(_outline(frame, ears, prepared.contour), image.size, pad)
    if box is None:
        return
    _paint_fur(image, prepared, mask, box, style)
    for ear in ears:
        with _sketch(image, frame, offset_polygon(ear.outer, EAR_OUTLINE)) as sketch:
            if sketch is not None:
                draw_ear(sketch, ear, style)
    with _sketch(image, frame, muzzle_extent(frame)) as sketch:
        if sketch is not None:
            draw_teeth(sketch, frame, style)
            draw_whiskers(sketch, frame, style)
            draw_nose(sketch, frame, style)


@contextmanager
def _sketch(image: Image.Image, frame: FaceFrame, extent: FloatArray) -> Iterator[Sketch | None]:
    """A supersampled sketch over just the part of the image that `extent` (face units) covers.

    Supersampling only where crisp parts go keeps large faces fast; the drawing is pasted back
    when the block ends. None when the extent lies off the image.
    """
    part = patch_box(frame.to_image(extent), image.size, pad=0.05 * frame.unit + 2)
    if part is None:
        yield None
        return
    sketch = Sketch(image.crop(part.as_tuple), part, frame, scale=3 if frame.unit < 60 else 2)
    yield sketch
    image.paste(sketch.result(), (part.left, part.top))


def _paint_fur(
    image: Image.Image, prepared: PreparedFace, mask: Image.Image, box: PatchBox, style: Style
) -> None:
    """Paints fur colours and markings into the image (in place), inside the face mask only."""
    sub = prepared.fur_box(mask, box)
    if sub is None:
        return
    soft = prepared.soft_masks(sub)
    fur, opacity = _fur_maps(soft, prepared.frame, style)
    region = image.crop(sub.as_tuple)
    face_mask, small_mask = prepared.mask_patch(mask, sub)
    small_src = np.asarray(region.reduce(soft.shrink), dtype=np.float32)
    gain = fur_gain(small_src, fur, opacity * small_mask, small_mask)
    painted = apply_gain(region, enlarge(encode_gain(gain), region.size))
    # Through the mask: outside it the gain is 1 only up to rounding, and those stay bit-exact.
    image.paste(painted, (sub.left, sub.top), face_mask)


def enlarge(small: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A smooth map enlarged: bilinear to half the size, then doubled (a fraction of the cost)."""
    half = (max(size[0] // 2, 1), max(size[1] // 2, 1))
    if min(half) < 64 or half[0] <= small.width:
        return small.resize(size, _BILINEAR)
    return small.resize(half, _BILINEAR).resize(size, Image.Resampling.NEAREST)


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
    """Every face turned into the animal, the largest (nearest) last so its ears go on top."""
    style = style_for(animal)
    if len(faces) != len(masks):
        msg = f"{len(faces)} faces but {len(masks)} masks"
        raise InvalidRequest(msg)
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    prepared = prepare(faces, masks)  # kept from earlier animals drawn over the same objects
    for i in sorted(range(len(faces)), key=lambda i: faces[i].box.area):
        mask = masks[i] if masks[i].mode == "L" else masks[i].convert("L")
        _paint_into(out, prepared[i], mask, style)
    return out

"""Faces into animals, in either style: `character` (avatar.compose.character: the animal's head
drawn in place of the face) or `paint` (here: fur painted inside the face mask, then ears and
features on top)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from avatar.catalogue import DEFAULT_STYLE
from avatar.compose.animals import STYLES, Style
from avatar.compose.blend import F32Array, apply_gain, encode_gain, fur_gain
from avatar.compose.character import draw_head
from avatar.compose.ears import EAR_OUTLINE, EarShape, both_ears, draw_ear
from avatar.compose.features import draw_nose, draw_teeth, draw_whiskers, muzzle_extent
from avatar.compose.geometry import FaceFrame, FloatArray, face_frame
from avatar.compose.markings import keep_clear, markings_for
from avatar.compose.prepared import PreparedFace, prepare
from avatar.compose.raster import (
    PatchBox,
    SoftMasks,
    enlarge,
    offset_polygon,
    patch_box,
    sketch_over,
)
from avatar.errors import InvalidRequest
from avatar.faces import Face


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


def compose_face(
    image: Image.Image, face: Face, mask: Image.Image, animal: str, style: str = DEFAULT_STYLE
) -> Image.Image:
    """A copy of an RGB image with one face turned into the animal; untouched far from the face."""
    return compose_faces(image, [face], [mask], animal, style)


def _head_box(
    image: Image.Image, prepared: PreparedFace, ears: tuple[EarShape, EarShape]
) -> PatchBox | None:
    """The part of the image one face's character may touch (None when it is off the image)."""
    frame = prepared.frame
    return patch_box(_outline(frame, ears, prepared.contour), image.size, 0.1 * frame.unit)


def _draw_character(
    image: Image.Image, prepared: PreparedFace, mask: Image.Image, style: Style
) -> None:
    """Draws one face's animal head into `image` in place, touching only the region around it."""
    ears = both_ears(prepared.frame, style)
    box = _head_box(image, prepared, ears)
    if box is not None:
        draw_head(image, prepared, mask, style, box, ears)


def _paint_into(
    image: Image.Image, prepared: PreparedFace, mask: Image.Image, style: Style
) -> None:
    """Paints one face's animal (the paint style) into `image` in place, touching only the
    region around it."""
    frame = prepared.frame
    ears = both_ears(frame, style)
    box = _head_box(image, prepared, ears)
    if box is None:
        return
    _paint_fur(image, prepared, mask, box, style)
    for ear in ears:
        with sketch_over(image, frame, offset_polygon(ear.outer, EAR_OUTLINE)) as sketch:
            if sketch is not None:
                draw_ear(sketch, ear, style)
    with sketch_over(image, frame, muzzle_extent(frame)) as sketch:
        if sketch is not None:
            draw_teeth(sketch, frame, style)
            draw_whiskers(sketch, frame, style)
            draw_nose(sketch, frame, style)


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
    image: Image.Image,
    faces: Sequence[Face],
    masks: Sequence[Image.Image],
    animal: str,
    style: str = DEFAULT_STYLE,
) -> Image.Image:
    """Every face turned into the animal, the largest (nearest) last so its ears go on top.

    `style` (one of avatar.catalogue.RENDER_STYLES): "character" draws the animal's head in
    place of each face, "paint" paints the animal's fur, ears and nose onto it. InvalidRequest
    for an unknown animal or style.
    """
    draw = _DRAW.get(style)
    if draw is None:
        msg = f"unknown style {style!r}; choose one of {', '.join(_DRAW)}"
        raise InvalidRequest(msg)
    look = style_for(animal)
    if len(faces) != len(masks):
        msg = f"{len(faces)} faces but {len(masks)} masks"
        raise InvalidRequest(msg)
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    prepared = prepare(faces, masks)  # kept from earlier animals drawn over the same objects
    for i in sorted(range(len(faces)), key=lambda i: faces[i].box.area):
        mask = masks[i] if masks[i].mode == "L" else masks[i].convert("L")
        draw(out, prepared[i], mask, look)
    return out


_DRAW = {"character": _draw_character, "paint": _paint_into}

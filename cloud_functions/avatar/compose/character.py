"""The `character` style: a stylised animal head drawn in place of the face, posed by it.

Each face becomes its animal's head: the face oval is filled, through the face mask and its soft
edge, with the animal's fur (its colours and markings, shaded as a rounded head with a darker rim
for a soft outline), and cartoon eyes, nose and mouth are drawn where the person's are. The ears
go on the head as in the `paint` style. Everything is drawn in face units, so the head scales and
rolls with the face; the eyes open and close and the mouth opens with the person's (see
avatar.compose.pose), and a turned head shifts and narrows the features. The person's hair, neck,
clothes and background are left as they are: only the mask and the ears are drawn into.

The fur is worked out small and enlarged (it is smooth); only the crisp features are drawn
supersampled, over the small areas they take.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

from avatar.compose.animals import RGB, Style
from avatar.compose.blend import F32Array, face_brightness, luma
from avatar.compose.ears import EAR_OUTLINE, EarShape, draw_ear
from avatar.compose.features import (
    draw_nose,
    draw_whiskers,
    muzzle_extent,
    nose_bottom,
    nose_center,
)
from avatar.compose.geometry import FaceFrame, FloatArray, cubic, ellipse, path, transform
from avatar.compose.markings import markings_for
from avatar.compose.pose import Pose, pose_of
from avatar.compose.prepared import PreparedFace
from avatar.compose.raster import PatchBox, Sketch, offset_polygon, sketch_over

MOUTH_INSIDE: RGB = (92, 30, 40)
_TONGUE: RGB = (232, 112, 124)
_WHITE = (255, 255, 255, 255)
EYE_RX, EYE_RY = 0.2, 0.24  # an open eye's radii, face units (before the pose's scale)


def draw_head(
    image: Image.Image,
    prepared: PreparedFace,
    mask: Image.Image,
    style: Style,
    box: PatchBox,
    ears: tuple[EarShape, EarShape],
) -> None:
    """Draws one face's animal head into `image` in place: ears, then the head through the mask.

    `box` is the part of the image the head and its `ears` may touch.
    """
    frame = prepared.frame
    pose = pose_of(prepared.face, frame)
    sub = prepared.fur_box(mask, box)
    # The photo's brightness under the face, before the ears (a floppy ear hangs over it) go on.
    light = 1.0 if sub is None else _light(image.crop(sub.as_tuple), mask, prepared, sub)
    for ear in ears:
        with sketch_over(image, frame, offset_polygon(ear.outer, EAR_OUTLINE)) as sketch:
            if sketch is not None:
                draw_ear(sketch, ear, style)
    if sub is None:
        return
    face_mask, small_mask = prepared.mask_patch(mask, sub, prepared.fine_shrink)
    fur = _fur(prepared, small_mask, sub, style, light)
    head = Image.fromarray(fur).resize(face_mask.size, Image.Resampling.BILINEAR)
    origin = (sub.left, sub.top)
    for side in (-1.0, 1.0):
        with sketch_over(head, frame, _eye_extent(side, pose), origin) as sketch:
            if sketch is not None:
                draw_eye(sketch, side, style, pose)
    with sketch_over(head, frame, _snout_extent(frame, pose), origin) as sketch:
        if sketch is not None:
            draw_whiskers(sketch, frame, style)
            draw_snout(sketch, frame, style, pose)
    image.paste(head, origin, face_mask)


def _fur(
    prepared: PreparedFace, small_mask: F32Array, sub: PatchBox, style: Style, light: float
) -> npt.NDArray[np.uint8]:
    """The head's fur over `sub`, small (the face's fine shrink) as RGB: colours, markings and
    shading, times the photo's `light`."""
    frame, shrink = prepared.frame, prepared.fine_shrink
    soft = prepared.soft_masks(sub, shrink)
    w, h = soft.small
    fur: F32Array = np.empty((h, w, 3), dtype=np.float32)
    fur[...] = np.asarray(style.fur, dtype=np.float32)
    for marking in markings_for(frame, style):
        m = soft.mask(marking.shapes, marking.blur) * np.float32(marking.opacity)
        fur += (np.asarray(marking.color, dtype=np.float32) - fur) * m[..., None]
    shade = prepared.memoized(
        ("head shade", sub, shrink), lambda: _head_shade(frame, small_mask, sub, shrink)
    )
    fur *= (shade * np.float32(light))[..., None]
    return np.asarray(np.clip(fur, 0.0, 255.0), dtype=np.uint8)


def _head_shade(frame: FaceFrame, small_mask: F32Array, sub: PatchBox, shrink: int) -> F32Array:
    """The head's rounded shading and darker rim over `sub` (small): the same for every animal,
    so a pack works it out once (read-only)."""
    h, w = small_mask.shape
    shade = _shading(frame, sub, shrink, (w, h)) * _rim(small_mask, frame.unit / shrink)
    shade.setflags(write=False)
    return shade


def _shading(frame: FaceFrame, sub: PatchBox, shrink: int, small: tuple[int, int]) -> F32Array:
    """A rounded head's light: brightest a little above the middle, darker towards the edges."""
    w, h = small
    xs = sub.left + (np.arange(w, dtype=np.float32) + 0.5) * shrink - frame.origin[0]
    ys = sub.top + (np.arange(h, dtype=np.float32) + 0.5) * shrink - frame.origin[1]
    ax, ay = frame.axis_x / frame.unit, frame.axis_y / frame.unit
    u = xs[None, :] * np.float32(ax[0]) + ys[:, None] * np.float32(ax[1])
    v = xs[None, :] * np.float32(ay[0]) + ys[:, None] * np.float32(ay[1])
    cx, cy = frame.head_x, (frame.top + frame.chin) / 2
    rx, ry = frame.half_width, (frame.chin - frame.top) / 2
    du, dv = (
        (u - np.float32(cx)) / np.float32(rx),
        (v - np.float32(cy - 0.25 * ry)) / np.float32(ry),
    )
    d2 = du * du + dv * dv
    shade = np.float32(1.08) - np.float32(0.2) * d2 - np.float32(0.05) * dv
    return np.asarray(np.clip(shade, 0.7, 1.12), dtype=np.float32)


def _rim(small_mask: F32Array, unit_px: float) -> F32Array:
    """Darker just inside the mask's edge: the head's soft outline, following its silhouette."""
    radius = 0.1 * unit_px
    img = Image.fromarray(np.asarray(small_mask * 255, dtype=np.uint8))
    if radius >= 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    blurred = np.asarray(img, dtype=np.float32) * np.float32(1 / 255)
    edge = np.clip((blurred - 0.35) / 0.5, 0.0, 1.0)
    return np.asarray(0.68 + 0.32 * edge, dtype=np.float32)


def _light(region: Image.Image, mask: Image.Image, prepared: PreparedFace, sub: PatchBox) -> float:
    """How bright the photo's face is, as a gentle factor, so the head sits in the scene's light."""
    _, small_mask = prepared.mask_patch(mask, sub)
    level = face_brightness(
        luma(np.asarray(region.reduce(prepared.shrink), np.float32)), small_mask
    )
    return float(np.clip(0.8 + 0.2 * level / 150.0, 0.78, 1.04))


def _foreshortening(pose: Pose, side: float) -> float:
    """How narrow a feature on `side` (-1: image left, 0: middle) is drawn on a turned head."""
    along = math.sqrt(max(1.0 - pose.turn * pose.turn, 0.0))
    return along * (1.0 - 0.45 * pose.turn * side)


def _eye_centre(side: float) -> tuple[float, float]:
    return 0.5 * side, -0.02


def _eye_extent(side: float, pose: Pose) -> FloatArray:
    cx, cy = _eye_centre(side)
    rx, ry = (EYE_RX + 0.08) * pose.scale, (EYE_RY + 0.08) * pose.scale
    return np.array(
        [[cx - rx, cy - ry], [cx + rx, cy - ry], [cx + rx, cy + ry], [cx - rx, cy + ry]]
    )


def eye_openness(pose: Pose, side: float) -> float:
    """The drawn eye's openness on `side` (-1 the subject's right eye, on the image's left)."""
    return pose.right_eye if side < 0 else pose.left_eye


def draw_eye(sketch: Sketch, side: float, style: Style, pose: Pose) -> None:
    """One cartoon eye: iris, pupil, glints and a lid line; a closed eye is a curved lash line."""
    cx, cy = _eye_centre(side)
    k, f = pose.scale, _foreshortening(pose, side)
    rx, ry = EYE_RX * k * f, EYE_RY * k
    dark = (*style.dark, 255)
    openness = eye_openness(pose, side)
    if openness < 0.2:
        lash = cubic(
            (cx - rx, cy), (cx - rx / 2, cy + 0.11 * k), (cx + rx / 2, cy + 0.11 * k), (cx + rx, cy)
        )
        sketch.line(lash, dark, 0.05 * k, 0.03 * k)
        return
    shown = ry * (0.25 + 0.75 * openness)  # the lid comes down over the eye's top
    oy = cy + (ry - shown)
    if style.eye_ring is not None:
        sketch.polygon(ellipse(cx, oy, rx + 0.05 * k, shown + 0.05 * k), (*style.eye_ring, 255))
    eye = ellipse(cx, oy, rx, shown)
    sketch.polygon(eye, (*style.iris, 255), dark, 0.035 * k)
    if style.pupil == "slit":
        sketch.polygon(ellipse(cx, oy, rx * 0.22, shown * 0.82), (16, 12, 10, 255))
    elif style.pupil == "round":
        r = min(EYE_RX * k, shown) * 0.58
        sketch.polygon(ellipse(cx, oy + shown * 0.05, r * f, r), (16, 12, 10, 255))
    lid = ellipse(cx, oy, rx, shown, n=48)[26:47]  # the upper arc, left to right
    sketch.line(lid, dark, 0.06 * k, 0.03 * k)
    glint = 0.065 * k * min(1.0, 0.4 + openness)
    sketch.polygon(ellipse(cx - rx * 0.32, oy - shown * 0.38, glint * f, glint), _WHITE)
    sketch.polygon(
        ellipse(cx + rx * 0.35, oy + shown * 0.3, glint * 0.45 * f, glint * 0.45), _WHITE
    )


# How far below the nose's centre the widest open mouth reaches, in face units before the pose's
# scale: half the tallest nose (0.28), the joint (0.11) and the deepest mouth (0.62).
_SNOUT_REACH = 1.0


def _snout_extent(frame: FaceFrame, pose: Pose) -> FloatArray:
    """Nose, mouth and whiskers' box in face units."""
    box = muzzle_extent(frame)
    bottom = nose_center(frame)[1] + _SNOUT_REACH * pose.scale
    box[2:, 1] = np.maximum(box[2:, 1], bottom)
    return box


def draw_snout(sketch: Sketch, frame: FaceFrame, style: Style, pose: Pose) -> None:
    """The nose, the line down to the mouth, and the mouth, closed or open with the person's."""
    k, f = pose.scale, _foreshortening(pose, 0.0)
    nose = (1.2 * k * f, 1.2 * k)
    bottom = nose_bottom(frame, style, nose)
    joint = np.array([(bottom[0] + frame.mouth[0]) / 2, bottom[1] + 0.11 * k])
    half = (0.17 + 0.12 * (frame.mouth_half - 0.3)) * k * f
    # The mouth's two arcs from the joint under the nose, curving down and out.
    arcs = [
        cubic(
            joint,
            joint + np.array([side * 0.25 * half, 0.1 * k]),
            joint + np.array([side * 0.8 * half, 0.1 * k]),
            joint + np.array([side * half, -0.02 * k]),
            12,
        )
        for side in (-1.0, 1.0)
    ]
    if pose.mouth > 0.05:
        _open_mouth(sketch, arcs, joint, k * (0.12 + 0.5 * pose.mouth), style)
    if style.teeth:
        for side in (-1.0, 1.0):
            tooth = transform(_TOOTH, scale=k, offset=joint + np.array([side * 0.05 * k, 0.0]))
            sketch.polygon(tooth, (252, 252, 248, 255), (*style.dark, 220), 0.015 * k)
    dark = (*style.dark, 255)
    sketch.line(np.stack([bottom, joint]), dark, 0.035 * k)
    for arc in arcs:
        sketch.line(arc, dark, 0.04 * k, 0.028 * k)
    draw_nose(sketch, frame, style, nose, philtrum=False)


# A buck tooth around its top middle, face units before the pose's scale.
_TOOTH = np.array([[-0.045, 0.03], [0.045, 0.03], [0.045, 0.15], [-0.045, 0.15]])


def _open_mouth(
    sketch: Sketch, arcs: list[FloatArray], joint: FloatArray, depth: float, style: Style
) -> None:
    """The open mouth under the two arcs, `depth` deep: dark inside, a tongue, outlined."""
    left_end, right_end = arcs[0][-1], arcs[1][-1]
    half = (right_end[0] - left_end[0]) / 2
    low = joint[1] + depth
    under = cubic(
        right_end, (right_end[0] + 0.1 * half, low), (left_end[0] - 0.1 * half, low), left_end, 16
    )
    mouth = path(arcs[0][::-1], arcs[1], under)[:-1]
    sketch.polygon(mouth, (*MOUTH_INSIDE, 255), (*style.dark, 255), 0.035)
    sketch.polygon(
        ellipse(joint[0], joint[1] + 0.58 * depth, half * 0.5, 0.14 * depth), (*_TONGUE, 255)
    )

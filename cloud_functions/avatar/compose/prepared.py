"""What drawing any animal over a face needs that does not depend on the animal, worked out once.

A pack draws several animals over the same image, faces and masks. The face's frame, its outline
in face units, the face mask's extent, the mask's small copy and the soft masks (fur markings share
their shapes between animals; the eyes' and mouth's clear zones are the same for all) are kept per
face mask while that mask object lives, so the second and later animals skip that work.

Everything kept is derived from the face and mask alone and is either immutable or read-only, so
an animal comes out bit-identical whether it is drawn first, later, alone or on several threads.
Face and mask objects are taken as values: a mask changed in place after a call is not noticed
(the pipeline never does so; copies are new objects and are prepared afresh).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image

from avatar.compose.geometry import FaceFrame, FloatArray, face_frame
from avatar.compose.raster import PatchBox, SoftMasks
from avatar.faces import Face

F32Array = npt.NDArray[np.float32]
_T = TypeVar("_T")
_MEMO_LIMIT = 64  # per face: far more than every animal's boxes and soft masks together


class PreparedFace:
    """A face and its mask's animal-independent preparation; safe to share between threads."""

    def __init__(self, face: Face) -> None:
        self.face = face
        self.frame: FaceFrame = face_frame(face)
        contour = np.asarray(face.contour, dtype=np.float64).reshape(-1, 2)
        # The face outline in face units (character_outline's share of it), (0, 2) when absent.
        self.contour: FloatArray = self.frame.to_local(contour) if len(contour) else contour
        # Markings need about four samples across a stripe (0.16 units): one per 1/24 unit.
        self.shrink = int(min(max(round(self.frame.unit / 24), 1), 8))
        # Fur that replaces the face shows its markings' edges as they are: one per 1/40 unit
        # (enlarged bilinearly, a stripe's edge stays smooth).
        self.fine_shrink = int(min(max(round(self.frame.unit / 40), 1), 4))
        self._lock = threading.Lock()
        self._memo: dict[tuple[object, ...], object] = {}

    def _memoized(self, key: tuple[object, ...], make: Callable[[], _T]) -> _T:
        """The value kept under `key`, made (outside the lock) on first use."""
        with self._lock:
            if key in self._memo:
                return self._memo[key]  # type: ignore[return-value]
        value = make()
        with self._lock:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            return self._memo.setdefault(key, value)  # type: ignore[return-value]

    def fur_box(self, mask: Image.Image, box: PatchBox) -> PatchBox | None:
        """The part of `box` the face mask covers (its non-zero pixels' extent); None if none.

        The same as the mask cropped to the box and its bounding box taken; when the box holds
        the whole mask (nearly always: it spans the ears and whiskers) that is the mask's own.
        """
        whole = self._memoized(("bbox",), mask.getbbox)
        if whole is None:
            return None
        left, top, right, bottom = whole
        if box.left <= left and box.top <= top and right <= box.right and bottom <= box.bottom:
            return PatchBox(left, top, right, bottom)
        bbox = mask.crop(box.as_tuple).getbbox()
        if bbox is None:
            return None
        return PatchBox(
            box.left + bbox[0], box.top + bbox[1], box.left + bbox[2], box.top + bbox[3]
        )

    def mask_patch(
        self, mask: Image.Image, sub: PatchBox, shrink: int | None = None
    ) -> tuple[Image.Image, F32Array]:
        """The face mask cropped to `sub`, and its small copy (`shrink`, by default the face's,
        times smaller) in [0, 1]."""
        factor = self.shrink if shrink is None else shrink

        def make() -> tuple[Image.Image, F32Array]:
            face_mask = mask.crop(sub.as_tuple)
            small = np.asarray(face_mask.reduce(factor), dtype=np.float32)
            small = small * np.float32(1 / 255)
            small.setflags(write=False)
            return face_mask, small

        return self._memoized(("mask", sub, factor), make)

    def memoized(self, key: tuple[object, ...], make: Callable[[], _T]) -> _T:
        """Anything else derived from this face and mask alone, made once under `key` (which
        must name all it depends on); the value must not be changed by its users."""
        return self._memoized(("other", *key), make)

    def soft_masks(self, sub: PatchBox, shrink: int | None = None) -> SoftMasks:
        """Soft masks over `sub` at `shrink` (by default the face's); each drawn mask is kept for
        later animals."""
        factor = self.shrink if shrink is None else shrink
        return self._memoized(
            ("soft", sub, factor), lambda: SoftMasks(sub, self.frame, factor, True)
        )


class _Prepared:
    """PreparedFace per live face mask object: id-keyed (Pillow images are unhashable), weakly."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a weakref callback may run while this thread holds it
        self._entries: dict[int, tuple[weakref.ref[Image.Image], PreparedFace]] = {}

    def get(self, face: Face, mask: Image.Image) -> PreparedFace:
        """The preparation of this face with this mask object, made on first use."""
        key = id(mask)
        with self._lock:
            found = self._entries.get(key)
        if found is not None and found[0]() is mask and found[1].face is face:
            return found[1]
        prepared = PreparedFace(face)  # holds no reference to the mask: it may be freed
        ref = weakref.ref(mask, functools.partial(self._forget, key))
        with self._lock:
            self._entries[key] = (ref, prepared)
        return prepared

    def _forget(self, key: int, dead: weakref.ref[Image.Image]) -> None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[0] is dead:
                del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


PREPARED = _Prepared()


def prepare(faces: Sequence[Face], masks: Sequence[Image.Image]) -> list[PreparedFace]:
    """Each face's preparation with its mask, kept from earlier calls with the same objects."""
    return [PREPARED.get(face, mask) for face, mask in zip(faces, masks, strict=True)]

"""The thin upload path: check an upload's type and size from its header, strip its metadata.

JPEG, PNG and WebP are never decoded: their metadata blocks are removed losslessly and only the
EXIF orientation is written back, as a minimal EXIF of that one tag (the function applies it).
HEIC is decoded and re-encoded (upright, shrunk, as JPEG) since no lossless path is worth it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from api.errors import InvalidImage, UnsupportedImage
from api.images import heic, jpeg, png, webp

ImageKind = Literal["jpeg", "png", "webp", "heif"]

SNIFF_BYTES = 12
NOT_AN_IMAGE = "the image is not JPEG, PNG, WebP or HEIC"
# Stripping a JPEG or WebP runs in C calls that hold the GIL (re, bytes.join: 1.4 ms for a 3 MB
# photo here), so a worker thread would not free the event loop, only add a hop. PNG's CRCs
# (zlib) release the GIL; HEIC is decoded, at a cost its byte size does not tell (a small file
# can hold 12 MP and take most of a second).
_RELEASES_THE_GIL_FROM_BYTES: dict[ImageKind, int] = {"png": 256 * 1024, "heif": 0}
HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
CONTENT_TYPES: dict[ImageKind, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
}
_STRIPPERS: dict[ImageKind, Callable[..., tuple[bytes, int, int]]] = {
    "jpeg": jpeg.strip,
    "png": png.strip,
    "webp": webp.strip,
}


@dataclass(frozen=True)
class PreparedImage:
    """An upload as it is forwarded: metadata removed, orientation kept (or applied, for HEIC)."""

    data: bytes
    content_type: str  # "image/jpeg" | "image/png" | "image/webp"
    width: int  # from the header, as stored (before orientation is applied); HEIC: as re-encoded
    height: int


def sniff(head: bytes) -> ImageKind | None:
    """The type by magic bytes (the first 12 bytes suffice), None when it is none we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(png.SIGNATURE):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return "heif"
    return None


def worth_a_thread(data: bytes) -> bool:
    """Whether `prepare` should run in a worker thread: when it would release the GIL there,
    so the event loop keeps serving (any HEIC, a large PNG), not when it would only add a hop."""
    threshold = _RELEASES_THE_GIL_FROM_BYTES.get(sniff(data[:SNIFF_BYTES]) or "jpeg")
    return threshold is not None and len(data) > threshold


def prepare(data: bytes, *, max_pixels: int, heic_max_side_px: int) -> PreparedImage:
    """Check and strip an upload.

    UnsupportedImage (415) when it is none of the four types, ImageTooLarge (413) when the
    header's width*height is over `max_pixels` (checked before any decoding), InvalidImage (422)
    when it is empty, truncated or structurally broken. No other exception escapes.
    """
    if not data:
        raise InvalidImage("the image is empty")
    kind = sniff(data[:SNIFF_BYTES])
    if kind is None:
        raise UnsupportedImage(NOT_AN_IMAGE)
    if kind == "heif":
        out, content_type, width, height = heic.transcode(
            data, max_pixels=max_pixels, max_side_px=heic_max_side_px
        )
        return PreparedImage(out, content_type, width, height)
    try:
        out, width, height = _STRIPPERS[kind](data, max_pixels=max_pixels)
    except (IndexError, ValueError, struct.error) as exc:
        # The parsers check every bound themselves; this is a second line, so that a slip in
        # them still answers 422 rather than 500.
        raise InvalidImage("the image is structurally broken") from exc
    return PreparedImage(out, CONTENT_TYPES[kind], width, height)

"""PNG: walk the chunks, keep an allowlist of the ones rendering needs, drop the rest."""

from __future__ import annotations

import struct
import zlib

from api.errors import InvalidImage
from api.images import exif
from api.images.size import checked_size

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pixels, palette, transparency, colour (incl. HDR), physical size and APNG animation.
KEPT_CHUNKS = frozenset(
    {
        b"IHDR",
        b"PLTE",
        b"IDAT",
        b"IEND",
        b"tRNS",
        b"gAMA",
        b"cHRM",
        b"sRGB",
        b"iCCP",
        b"sBIT",
        b"bKGD",
        b"cICP",
        b"mDCv",
        b"cLLi",
        b"pHYs",
        b"acTL",
        b"fcTL",
        b"fdAT",
    }
)
_HEAD = struct.Struct(">I4s")
_IHDR_SIZE = 13
_MAX_CHUNK = (1 << 31) - 1  # the PNG limit on a chunk's length
# Encoders split IDAT into chunks of 8 kB or more; millions of tiny chunks would cost seconds.
_MAX_CHUNKS = 1 << 16


def strip(data: bytes, *, max_pixels: int) -> tuple[bytes, int, int]:
    """The PNG without metadata (orientation kept as a minimal eXIf), and its width and height."""
    if not data.startswith(SIGNATURE):
        raise InvalidImage("the PNG signature is missing")
    view = memoryview(data)
    start, end, kind = _chunk(data, view, len(SIGNATURE))
    if kind != b"IHDR":
        raise InvalidImage("the PNG does not start with IHDR")
    width, height = _header(data, start, end, max_pixels)
    kept: list[bytes | memoryview] = [SIGNATURE, view[start - 8 : end + 4]]
    orientation, seen_exif, has_idat = exif.UPRIGHT, False, False
    pos = end + 4
    for _ in range(_MAX_CHUNKS):
        start, end, kind = _chunk(data, view, pos)
        if kind == b"IHDR":
            raise InvalidImage("the PNG has a second IHDR")
        if kind == b"eXIf" and not seen_exif:
            seen_exif = True
            orientation = exif.orientation(data[start:end])
        has_idat = has_idat or kind == b"IDAT"
        if kind in KEPT_CHUNKS:
            kept.append(view[start - 8 : end + 4])
        if kind == b"IEND":
            break  # whatever follows IEND is left out
        pos = end + 4
    else:
        raise InvalidImage("the PNG has too many chunks")
    if not has_idat:
        raise InvalidImage("the PNG has no image data")
    if orientation != exif.UPRIGHT:
        # Right after IHDR: Pillow reads eXIf only when it comes before the image data.
        kept.insert(2, _chunk_bytes(b"eXIf", exif.minimal_tiff(orientation)))
    return b"".join(kept), width, height


def _chunk(data: bytes, view: memoryview, pos: int) -> tuple[int, int, bytes]:
    """The data start, data end and type of the chunk at `pos`, its bounds and CRC checked."""
    if pos + 12 > len(data):
        raise InvalidImage("the PNG is truncated (no IEND)")
    length, kind = _HEAD.unpack_from(data, pos)
    start = pos + 8
    end = start + length
    if length > _MAX_CHUNK or end + 4 > len(data):
        raise InvalidImage("a PNG chunk runs past the end of the file")
    if not kind.isalpha():
        raise InvalidImage("a PNG chunk type is not four letters")
    (crc,) = struct.unpack_from(">I", data, end)
    if zlib.crc32(view[pos + 4 : end]) != crc:
        raise InvalidImage("a PNG chunk has a bad CRC")
    return start, end, kind


def _header(data: bytes, start: int, end: int, max_pixels: int) -> tuple[int, int]:
    """Width and height from IHDR, refused when there are too many pixels."""
    if end - start != _IHDR_SIZE:
        raise InvalidImage("the PNG header chunk has the wrong length")
    width, height = struct.unpack_from(">II", data, start)
    return checked_size("PNG", width, height, max_pixels)


def _chunk_bytes(kind: bytes, payload: bytes) -> bytes:
    """A whole chunk: length, type, data, CRC."""
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

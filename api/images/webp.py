"""WebP: walk the RIFF chunks, keep the image and colour chunks, drop EXIF, XMP and the rest."""

from __future__ import annotations

import struct

from api.errors import InvalidImage
from api.images import exif
from api.images.size import checked_size

_VP8X, _VP8, _VP8L, _ALPH = b"VP8X", b"VP8 ", b"VP8L", b"ALPH"
_ANIM, _ANMF, _ICCP, _EXIF = b"ANIM", b"ANMF", b"ICCP", b"EXIF"
KEPT_CHUNKS = frozenset({_VP8X, _ICCP, _ANIM, _ANMF, _ALPH, _VP8, _VP8L})
# What an animation frame may hold: its bitstream and alpha; unknown chunks in it are dropped.
_FRAME_CHUNKS = frozenset({_ALPH, _VP8, _VP8L})
_ICC_FLAG, _EXIF_FLAG, _XMP_FLAG = 0x20, 0x08, 0x04
_FILE_HEADER = 12  # "RIFF", size, "WEBP"
_VP8X_SIZE = 10
_ANMF_HEADER = 16
_VP8_START_CODE = b"\x9d\x01\x2a"
_VP8L_SIGNATURE = 0x2F
_FOURTEEN_BITS = 0x3FFF
# A photo has a handful of chunks (an animation one per frame); millions would cost seconds.
_MAX_CHUNKS = 1 << 16

Chunk = tuple[bytes, int, int]  # type, data start, data end (absolute offsets)


class _Output:
    """Chunks as they will be written: header, data (not copied) and padding, in order."""

    def __init__(self) -> None:
        self.parts: list[bytes | memoryview] = []
        self.size = 0

    def add(self, kind: bytes, payload: bytes | memoryview) -> None:
        """Append a chunk, padded to an even size as RIFF requires."""
        length = len(payload)
        self.parts += (kind + struct.pack("<I", length), payload)
        if length % 2:
            self.parts.append(b"\x00")
        self.size += 8 + length + length % 2

    def extend(self, other: _Output) -> None:
        """Append the chunks of another output."""
        self.parts += other.parts
        self.size += other.size

    def riff(self) -> bytes:
        """The whole file, its RIFF size fixed to the chunks kept."""
        header = b"RIFF" + struct.pack("<I", 4 + self.size) + b"WEBP"
        return b"".join([header, *self.parts])


def strip(data: bytes, *, max_pixels: int) -> tuple[bytes, int, int]:
    """The WebP without metadata (orientation kept as a minimal EXIF), and its width and height."""
    if len(data) < _FILE_HEADER or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise InvalidImage("the WebP RIFF header is missing")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = 8 + riff_size
    if riff_size < 4 or end > len(data):
        raise InvalidImage("the WebP is truncated (shorter than its RIFF size)")
    # Bytes after the RIFF size are not part of the file: they are left out.
    view = memoryview(data)
    chunks = _chunks(data, _FILE_HEADER, end)
    if not chunks:
        raise InvalidImage("the WebP has no chunks")
    kind, start, stop = chunks[0]
    if kind == _VP8X:
        return _extended(data, view, chunks, max_pixels)
    if kind in (_VP8, _VP8L):
        # The simple format: one bitstream and nothing else (it cannot hold EXIF).
        width, height = _bitstream_size(data, kind, start, stop, max_pixels)
        out = _Output()
        out.add(kind, view[start:stop])
        return out.riff(), width, height
    raise InvalidImage("the WebP starts with neither VP8X, VP8 nor VP8L")


def _chunks(data: bytes, pos: int, end: int) -> list[Chunk]:
    """The chunks between `pos` and `end`, each one's bounds checked."""
    chunks: list[Chunk] = []
    while pos < end:
        if len(chunks) == _MAX_CHUNKS:
            raise InvalidImage("the WebP has too many chunks")
        if pos + 8 > end:
            raise InvalidImage("the WebP is truncated in a chunk header")
        kind = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        start = pos + 8
        pos = start + size + size % 2
        if pos > end:
            raise InvalidImage("a WebP chunk runs past the end of the file")
        chunks.append((kind, start, start + size))
    return chunks


def _extended(
    data: bytes, view: memoryview, chunks: list[Chunk], max_pixels: int
) -> tuple[bytes, int, int]:
    """An extended (VP8X) WebP: chunks filtered, flags fixed, orientation written back last."""
    _, start, stop = chunks[0]
    if stop - start < _VP8X_SIZE:
        raise InvalidImage("the WebP VP8X chunk is too short")
    width, height = checked_size(
        "WebP", _u24(data, start + 4) + 1, _u24(data, start + 7) + 1, max_pixels
    )
    body = _Output()
    orientation, seen_exif, has_image, has_icc = exif.UPRIGHT, False, False, False
    for kind, begin, end in chunks[1:]:
        if kind == _EXIF and not seen_exif:
            seen_exif = True
            orientation = exif.orientation(data[begin:end])
        elif kind in (_VP8, _VP8L):
            _bitstream_size(data, kind, begin, end, max_pixels)
        if kind == _ANMF:
            body.add(kind, _frame(data, view, begin, end, max_pixels))
        elif kind in KEPT_CHUNKS and kind != _VP8X:
            body.add(kind, view[begin:end])
        has_image = has_image or kind in (_VP8, _VP8L, _ANMF)
        has_icc = has_icc or kind == _ICCP
    if not has_image:
        raise InvalidImage("the WebP has no image data")
    flags = data[start] & ~(_ICC_FLAG | _EXIF_FLAG | _XMP_FLAG)
    flags |= _ICC_FLAG if has_icc else 0
    if orientation != exif.UPRIGHT:
        flags |= _EXIF_FLAG
        # After the image data, where the container spec places EXIF.
        body.add(_EXIF, exif.minimal_tiff(orientation))
    out = _Output()
    out.add(_VP8X, bytes([flags]) + data[start + 1 : start + _VP8X_SIZE])
    out.extend(body)
    return out.riff(), width, height


def _frame(data: bytes, view: memoryview, start: int, end: int, max_pixels: int) -> bytes:
    """An ANMF chunk's data keeping only the frame's bitstream and alpha chunks."""
    if end - start < _ANMF_HEADER:
        raise InvalidImage("a WebP animation frame is too short")
    checked_size("WebP", _u24(data, start + 6) + 1, _u24(data, start + 9) + 1, max_pixels)
    frame = _Output()
    for kind, begin, stop in _chunks(data, start + _ANMF_HEADER, end):
        if kind in (_VP8, _VP8L):
            _bitstream_size(data, kind, begin, stop, max_pixels)
        if kind in _FRAME_CHUNKS:
            frame.add(kind, view[begin:stop])
    return b"".join([data[start : start + _ANMF_HEADER], *frame.parts])


def _bitstream_size(
    data: bytes, kind: bytes, start: int, end: int, max_pixels: int
) -> tuple[int, int]:
    """Width and height from a VP8 key frame or VP8L header, refused when too many pixels."""
    if kind == _VP8:
        # A 3-byte frame tag (bit 0 clear on a key frame), the start code, 14-bit sizes.
        if end - start < 10 or data[start] & 1 or data[start + 3 : start + 6] != _VP8_START_CODE:
            raise InvalidImage("the WebP VP8 bitstream header is malformed")
        width, height = struct.unpack_from("<HH", data, start + 6)
        return checked_size("WebP", width & _FOURTEEN_BITS, height & _FOURTEEN_BITS, max_pixels)
    # VP8L: a signature byte, then width-1 and height-1 in 14 bits each, alpha, a 3-bit version.
    if end - start < 5 or data[start] != _VP8L_SIGNATURE:
        raise InvalidImage("the WebP VP8L bitstream header is malformed")
    (bits,) = struct.unpack_from("<I", data, start + 1)
    if bits >> 29:
        raise InvalidImage("the WebP VP8L bitstream has an unknown version")
    width, height = (bits & _FOURTEEN_BITS) + 1, ((bits >> 14) & _FOURTEEN_BITS) + 1
    return checked_size("WebP", width, height, max_pixels)


def _u24(data: bytes, pos: int) -> int:
    """A 24-bit little-endian integer."""
    return int.from_bytes(data[pos : pos + 3], "little")

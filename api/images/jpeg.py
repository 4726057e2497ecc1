"""JPEG: walk the marker segments, keep what decoding needs, drop every metadata block."""

from __future__ import annotations

import re
import struct

from api.errors import InvalidImage
from api.images import exif
from api.images.size import checked_size

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
_EOI, _SOS, _SOI = 0xD9, 0xDA, 0xD8
_APP0, _APP1, _APP2, _APP14, _COM = 0xE0, 0xE1, 0xE2, 0xEE, 0xFE
_TEM = 0x01
_RST = range(0xD0, 0xD8)
# Frame headers: baseline, extended, progressive, lossless; Huffman or arithmetic (not C4/C8/CC).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Tables and parameters between or before scans: DHT, DAC, DQT, DNL, DRI.
_TABLES = frozenset({0xC4, 0xCC, 0xDB, 0xDC, 0xDD})
# The APPn segments decoding needs, by the identifier their payload starts with.
_KEPT_APPS = {_APP0: b"JFIF\x00", _APP2: b"ICC_PROFILE\x00", _APP14: b"Adobe"}
# A marker: any number of 0xFF fill bytes, then the marker byte.
_MARKER = re.compile(rb"\xff+([^\xff])")
# The end of entropy-coded data: 0xFF followed by neither a stuffed 0x00, an RSTn (which stays
# inside the scan) nor another 0xFF (a fill byte before the marker). One search in C, no loop.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# A photo has a few dozen segments; a hostile file of millions of tiny ones would cost seconds.
_MAX_SEGMENTS = 1 << 16
_JFIF_FIXED = 12  # "JFIF\0", version, units, densities; the thumbnail size bytes follow


class _Walk:
    """What a walk over the segments has found and kept so far."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.view = memoryview(data)
        self.kept: list[bytes | memoryview] = [SOI]
        self.exif_at = 1  # an APP1 goes right after SOI, or after a JFIF APP0 right after SOI
        self.orientation = exif.UPRIGHT
        self.seen_exif = False
        self.size: tuple[int, int] | None = None
        self.scans = 0


def strip(data: bytes, *, max_pixels: int) -> tuple[bytes, int, int]:
    """The JPEG without metadata (orientation kept as a minimal EXIF), and its width and height."""
    if not data.startswith(SOI):
        raise InvalidImage("the JPEG does not start with SOI")
    walk = _Walk(data)
    pos = len(SOI)
    for _ in range(_MAX_SEGMENTS):
        marker, pos = _next_marker(data, pos)
        if marker == _EOI:
            break
        pos = _segment(walk, marker, pos, max_pixels)
    else:
        raise InvalidImage("the JPEG has too many segments")
    # Whatever follows EOI (MPF secondary images, vendor trailers with EXIF of their own) is left.
    walk.kept.append(EOI)
    if walk.size is None or walk.scans == 0:
        raise InvalidImage("the JPEG has no frame header or no scan")
    if walk.orientation != exif.UPRIGHT:
        walk.kept.insert(walk.exif_at, _app1(walk.orientation))
    return b"".join(walk.kept), *walk.size


def _next_marker(data: bytes, pos: int) -> tuple[int, int]:
    """The marker at `pos` (after any fill bytes) and the position just after it."""
    match = _MARKER.match(data, pos)
    if match is None:
        raise InvalidImage("the JPEG is truncated or has data where a marker belongs")
    marker = data[match.end() - 1]
    if marker in (0, _SOI):
        raise InvalidImage("the JPEG has a misplaced marker")
    return marker, match.end()


def _segment(walk: _Walk, marker: int, pos: int, max_pixels: int) -> int:
    """Handle the segment whose marker ends at `pos`; the position of the next marker."""
    if marker == _TEM or marker in _RST:
        return pos  # standalone markers outside a scan carry nothing: dropped
    data = walk.data
    if pos + 2 > len(data):
        raise InvalidImage("the JPEG is truncated in a segment header")
    length: int = struct.unpack_from(">H", data, pos)[0]
    end = pos + length
    if length < 2 or end > len(data):
        raise InvalidImage("a JPEG segment's length runs past the end of the file")
    segment = walk.view[pos - 2 : end]
    if marker == _SOS:
        return _scan(walk, segment, end)
    if marker in _SOF:
        _frame(walk, pos + 2, end, max_pixels)
        walk.kept.append(segment)
    elif marker in _TABLES:
        walk.kept.append(segment)
    elif marker == _APP1:
        _read_orientation(walk, pos + 2, end)
    elif marker == _APP0 and data.startswith(_KEPT_APPS[_APP0], pos + 2, end):
        _jfif(walk, pos + 2, end)
    elif marker in _KEPT_APPS and data.startswith(_KEPT_APPS[marker], pos + 2, end):
        walk.kept.append(segment)
    # Anything else (other APPn, COM, non-ICC APP2 such as MPF, JFXX thumbnails, reserved) is left.
    return end


def _scan(walk: _Walk, header: memoryview, end: int) -> int:
    """Keep a scan header and its entropy-coded data; the position of the marker after it."""
    if walk.size is None:
        raise InvalidImage("the JPEG has a scan before its frame header")
    match = _SCAN_END.search(walk.data, end)
    if match is None:
        raise InvalidImage("the JPEG is truncated in its image data")
    walk.kept += (header, walk.view[end : match.start()])
    walk.scans += 1
    return match.start()


def _frame(walk: _Walk, start: int, end: int, max_pixels: int) -> None:
    """Read the size from a frame header and refuse too many pixels, before any image data."""
    if end - start < 6:
        raise InvalidImage("the JPEG frame header is too short")
    height, width = struct.unpack_from(">HH", walk.data, start + 1)
    size = checked_size("JPEG frame", width, height, max_pixels)
    # Only the first frame header is the image's (hierarchical files have more).
    if walk.size is None:
        walk.size = size


def _jfif(walk: _Walk, start: int, end: int) -> None:
    """Keep a JFIF APP0 without its thumbnail (pixels of another time, not needed to decode)."""
    if end - start < _JFIF_FIXED + 2:
        return  # too short to be JFIF: left out, decoders do not need it
    if len(walk.kept) == 1:
        walk.exif_at = 2  # EXIF's APP1 may follow a JFIF APP0 that directly follows SOI
    payload = walk.data[start : start + _JFIF_FIXED] + b"\x00\x00"
    walk.kept.append(b"\xff\xe0" + struct.pack(">H", len(payload) + 2) + payload)


def _read_orientation(walk: _Walk, start: int, end: int) -> None:
    """Note the orientation of the first Exif APP1 (the segment itself is left out)."""
    if not walk.seen_exif and walk.data.startswith(exif.EXIF_HEADER, start, end):
        walk.seen_exif = True
        walk.orientation = exif.orientation(walk.data[start:end])


def _app1(orientation: int) -> bytes:
    """An Exif APP1 segment holding only the orientation."""
    payload = exif.EXIF_HEADER + exif.minimal_tiff(orientation)
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload

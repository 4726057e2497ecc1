"""EXIF orientation: read from a TIFF structure, written back as a TIFF holding only that tag."""

from __future__ import annotations

import struct

ORIENTATION_TAG = 0x0112
EXIF_HEADER = b"Exif\x00\x00"
UPRIGHT = 1
_BYTE_ORDERS = {b"II*\x00": "<", b"MM\x00*": ">"}
_TIFF_HEADER_SIZE = 8
_ENTRY_SIZE = 12
_SHORT = 3
_LONG = 4


def orientation(tiff: bytes) -> int:
    """Tag 0x0112 of IFD0 (1..8); 1 when it is absent or anything is malformed."""
    # JPEG's APP1 and some WebP writers put the APP1 header in front of the TIFF structure.
    start = len(EXIF_HEADER) if tiff.startswith(EXIF_HEADER) else 0
    order = _BYTE_ORDERS.get(tiff[start : start + 4])
    if order is None or len(tiff) < start + _TIFF_HEADER_SIZE:
        return UPRIGHT
    (ifd,) = struct.unpack_from(order + "I", tiff, start + 4)
    first_entry = start + ifd + 2
    if ifd < _TIFF_HEADER_SIZE or first_entry > len(tiff):
        return UPRIGHT
    (declared,) = struct.unpack_from(order + "H", tiff, first_entry - 2)
    # A hostile count cannot make us read past the end: only the entries present are looked at.
    entries = min(declared, (len(tiff) - first_entry) // _ENTRY_SIZE)
    for index in range(entries):
        offset = first_entry + index * _ENTRY_SIZE
        tag, kind, count = struct.unpack_from(order + "HHI", tiff, offset)
        if tag == ORIENTATION_TAG:
            return _orientation_value(tiff, offset + 8, order, kind, count)
    return UPRIGHT


def _orientation_value(tiff: bytes, offset: int, order: str, kind: int, count: int) -> int:
    """The value of an orientation entry whose 4-byte value field is at `offset`."""
    if count < 1 or kind not in (_SHORT, _LONG):
        return UPRIGHT
    (value,) = struct.unpack_from(order + ("H" if kind == _SHORT else "I"), tiff, offset)
    return value if 1 <= value <= 8 else UPRIGHT


def minimal_tiff(value: int) -> bytes:
    """A big-endian TIFF whose IFD0 holds one SHORT entry, the orientation, and no next IFD."""
    if not 1 <= value <= 8:
        msg = f"an EXIF orientation is 1..8, not {value}"
        raise ValueError(msg)
    header = b"MM\x00*" + struct.pack(">I", _TIFF_HEADER_SIZE)
    # A SHORT value sits left-justified in the entry's 4-byte value field.
    entry = struct.pack(">HHIHH", ORIENTATION_TAG, _SHORT, 1, value, 0)
    return header + struct.pack(">H", 1) + entry + struct.pack(">I", 0)

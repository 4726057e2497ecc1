"""The pixel limit every format's header is held to, before any image data is touched."""

from __future__ import annotations

from api.errors import ImageTooLarge, InvalidImage


def checked_size(kind: str, width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size a header gives, unless a dimension is zero (422) or there are too many pixels
    (413)."""
    if width == 0 or height == 0:
        raise InvalidImage(f"the {kind} header has a zero dimension")
    if width * height > max_pixels:
        msg = f"the image has {width}x{height} pixels, over {max_pixels}"
        raise ImageTooLarge(msg)
    return width, height

"""HEIC: no lossless path worth having, so decode, orient, shrink and re-encode without metadata."""

from __future__ import annotations

import io
from functools import cache
from typing import TYPE_CHECKING

from api.errors import ApiError, ImageTooLarge, InvalidImage
from api.images.size import checked_size

if TYPE_CHECKING:
    from PIL import Image

JPEG_QUALITY = 90


@cache
def _register() -> None:
    """Teach Pillow to open HEIF, once per process, only when a HEIC arrives."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def transcode(data: bytes, *, max_pixels: int, max_side_px: int) -> tuple[bytes, str, int, int]:
    """An upright JPEG (PNG when it has alpha) of at most `max_side_px`, only ICC kept.

    Returns the bytes, their content type, and the width and height of what was encoded.
    """
    # Imported here: JPEG, PNG and WebP uploads never load Pillow.
    from PIL import Image

    _register()
    try:
        return _transcode(data, max_pixels, max_side_px)
    except (ApiError, MemoryError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge("the image has too many pixels") from exc
    except Exception as exc:
        # libheif and Pillow report broken files as OSError, ValueError, RuntimeError, SyntaxError
        # and more, depending on where decoding stops: all of them mean the upload is unusable.
        raise InvalidImage("the HEIC image cannot be decoded (truncated or corrupt)") from exc


def _transcode(data: bytes, max_pixels: int, max_side_px: int) -> tuple[bytes, str, int, int]:
    """Open (header only), check the pixel count, then decode, orient, shrink and encode."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data), formats=["HEIF"]) as opened:
        checked_size("HEIC", opened.width, opened.height, max_pixels)
        opened.load()
        # pillow-heif applies the HEIF rotation itself and resets EXIF's; this catches the rest.
        ImageOps.exif_transpose(opened, in_place=True)
        icc_profile = opened.info.get("icc_profile")
        image = _shrink(opened, max_side_px)
    return _encode(image, icc_profile)


def _shrink(image: Image.Image, max_side_px: int) -> Image.Image:
    """Reduced by the smallest whole factor that brings the long side to at most `max_side_px`."""
    factor = -(-max(image.size) // max_side_px)
    return image.reduce(factor) if factor > 1 else image


def _encode(image: Image.Image, icc_profile: bytes | None) -> tuple[bytes, str, int, int]:
    """JPEG quality 90 (PNG when there is real transparency), no exif= so no EXIF is written."""
    out = io.BytesIO()
    if _has_alpha(image):
        image.convert("RGBA").save(out, format="PNG", icc_profile=icc_profile)
        content_type = "image/png"
    else:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        rgb.save(out, format="JPEG", quality=JPEG_QUALITY, icc_profile=icc_profile)
        content_type = "image/jpeg"
    return out.getvalue(), content_type, image.width, image.height


def _has_alpha(image: Image.Image) -> bool:
    """Whether any pixel is less than fully opaque."""
    if "A" not in image.getbands():
        return False
    extrema = image.getchannel("A").getextrema()
    return isinstance(extrema[0], int) and extrema[0] < 255

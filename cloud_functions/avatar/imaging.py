"""Pure image functions (Pillow + numpy): sniff, decode safely, encode, draw masks.

Nothing here knows about HTTP or backends; errors are the function's own (avatar.errors).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from avatar.errors import ImageTooLarge, InvalidImage, UnsupportedImage

ImageKind = Literal["jpeg", "png", "webp", "heif"]

HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
PIL_FORMATS: dict[ImageKind, list[str]] = {
    "jpeg": ["JPEG"],
    "png": ["PNG"],
    "webp": ["WEBP"],
    "heif": ["HEIF"],
}
JPEG_QUALITY = 90
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Decoded:
    """A decoded image at working size, upright, without metadata (RGB, or RGBA with alpha)."""

    image: Image.Image
    kind: ImageKind
    source_size: tuple[int, int]

    @property
    def has_alpha(self) -> bool:
        return self.image.mode == "RGBA"


def sniff(data: bytes) -> ImageKind:
    """The image type from its magic bytes; UnsupportedImage if it is none we accept."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "heif"
    msg = "not a JPEG, PNG, WebP or HEIC image (checked by its magic bytes)"
    raise UnsupportedImage(msg)


@cache
def register_heif() -> None:
    """Teach Pillow to open HEIC/HEIF, once per process, only when a HEIC arrives."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def open_checked(data: bytes, kind: ImageKind, max_pixels: int) -> Image.Image:
    """Open lazily (header only) as exactly `kind`, refusing pixel counts over the limit."""
    if kind == "heif":
        register_heif()
    # Pillow's own bomb check (default: error over ~179 MP) stays as a second line of defence;
    # it is process-global, so the configured limit is enforced below instead of through it.
    try:
        image = Image.open(io.BytesIO(data), formats=PIL_FORMATS[kind])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image has more than {max_pixels} pixels") from exc
    except Exception as exc:  # hostile headers raise many types; all mean "not readable"
        raise InvalidImage(f"cannot read the {kind} image header") from exc
    width, height = image.size
    if width * height > max_pixels:
        msg = f"image is {width}x{height}, over the limit of {max_pixels} pixels"
        raise ImageTooLarge(msg)
    return image


def draft_request(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """The size to ask JPEG draft for: the largest DCT scale (1/1..1/8) that fits `long_side`.

    The decoder then never makes pixels we would throw away, and no resize follows: a
    4000x3000 photo decodes straight to 1000x750 (a 1/2 draft, 2000 px, would need a resize
    that costs more than the whole decode). The working image is thus 1/2 to 1/1 of the limit.
    """
    for scale in (1, 2, 4, 8):
        if math.ceil(max(size) / scale) <= long_side:
            break
    return (max(1, size[0] // scale), max(1, size[1] // scale))


def decode(data: bytes, *, max_pixels: int, working_size_px: int) -> Decoded:
    """Sniff, check pixels, decode (JPEG draft), apply EXIF orientation, shrink, drop metadata."""
    kind = sniff(data)
    image = open_checked(data, kind, max_pixels)
    source_size = image.size
    try:
        if kind == "jpeg":
            image.draft("RGB", draft_request(image.size, working_size_px))
        image.load()
        working = working_copy(upright_view(image), working_size_px)
    except Exception as exc:  # decoders raise many types on hostile input; all mean "corrupt"
        raise InvalidImage(f"the {kind} image is truncated or corrupt") from exc
    return Decoded(working, kind, source_size)


def upright_view(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF Orientation says (no copy when it is already upright)."""
    if image.getexif().get(EXIF_ORIENTATION, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def working_copy(image: Image.Image, long_side: int) -> Image.Image:
    """RGB/RGBA at most `long_side` px long, keeping only the ICC profile of the metadata.

    Too-large images shrink by the smallest whole factor that fits (a block average, like the
    JPEG draft's DCT scaling): 4x faster than a fractional resize of a 12 MP HEIC, and as
    clean; the working image is then between 1/2 and 1/1 of the limit, as for JPEG.
    """
    icc = image.info.get("icc_profile")
    mode = "RGBA" if has_transparency(image) else "RGB"
    out = image if image.mode == mode else image.convert(mode)
    factor = math.ceil(max(out.size) / long_side)
    if factor > 1:
        out = out.reduce(factor)
    if out is image:
        out = image.copy()
    out.info = {"icc_profile": icc} if icc else {}  # EXIF, XMP and GPS never go further
    return out


def has_transparency(image: Image.Image) -> bool:
    """Whether the image carries an alpha channel or a transparent palette entry."""
    return image.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or "transparency" in image.info


def encode(image: Image.Image) -> tuple[bytes, str, str]:
    """The output file: PNG when the image has alpha, else JPEG; never any EXIF."""
    buffer = io.BytesIO()
    icc = image.info.get("icc_profile")
    extra = {"icc_profile": icc} if icc else {}
    if image.mode == "RGBA":
        image.save(buffer, "PNG", compress_level=3, **extra)
        return buffer.getvalue(), "png", "image/png"
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy it
    rgb.save(buffer, "JPEG", quality=JPEG_QUALITY, **extra)
    return buffer.getvalue(), "jpg", "image/jpeg"


def contour_mask(
    size: tuple[int, int], contour: npt.NDArray[np.float32], feather_px: float
) -> Image.Image:
    """An "L" mask of `size`: the polygon filled with 255, edges blurred over ~feather_px."""
    margin = math.ceil(feather_px * 2) + 2
    x0, y0 = np.floor(contour.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(contour.max(axis=0)).astype(int) + margin
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size[0]), min(y1, size[1])
    mask = Image.new("L", size)
    if x1 <= x0 or y1 <= y0:
        return mask
    local = Image.new("L", (x1 - x0, y1 - y0))
    points = [(float(x) - x0, float(y) - y0) for x, y in contour]
    ImageDraw.Draw(local).polygon(points, fill=255)
    if feather_px > 0:
        local = local.filter(ImageFilter.GaussianBlur(feather_px / 2))
    mask.paste(local, (x0, y0))
    return mask

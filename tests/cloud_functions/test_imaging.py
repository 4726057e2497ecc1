"""Pure image functions: sniffing, safe decoding, encoding, masks."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from function_testing import encode, exif_rotated_jpeg, gps_jpeg, load_photo, png_claiming
from PIL import Image

from avatar import imaging
from avatar.errors import ImageTooLarge, InvalidImage, UnsupportedImage


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\xff\xd8\xff\xe0rest", "jpeg"),
        (b"\x89PNG\r\n\x1a\nrest", "png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00", "heif"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00", "heif"),
    ],
)
def test_sniff_accepts_by_magic_bytes(data: bytes, kind: str) -> None:
    assert imaging.sniff(data) == kind


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a....",
        b"BM....",
        b"\x00\x00\x00\x18ftypisom\x00\x00",
        b"<svg></svg>",
        b"%PDF-1.7",
    ],
)
def test_sniff_refuses_everything_else(data: bytes) -> None:
    with pytest.raises(UnsupportedImage):
        imaging.sniff(data)


@pytest.mark.parametrize(
    ("size", "working"),
    [((4000, 3000), (1000, 750)), ((3200, 2400), (1600, 1200)), ((1700, 1000), (850, 500))],
)
def test_jpeg_decodes_at_the_largest_dct_scale_that_fits(
    size: tuple[int, int], working: tuple[int, int]
) -> None:
    big = load_photo("astronaut").resize(size)

    decoded = imaging.decode(encode(big), max_pixels=50_000_000, working_size_px=1600)

    assert decoded.image.size == working
    assert decoded.source_size == size
    assert decoded.image.mode == "RGB"


@pytest.mark.parametrize(
    ("size", "working"), [((2000, 1500), (1000, 750)), ((4000, 3000), (1334, 1000))]
)
def test_other_formats_shrink_by_a_whole_factor(
    size: tuple[int, int], working: tuple[int, int]
) -> None:
    big = load_photo("astronaut").resize(size)
    decoded = imaging.decode(encode(big, "PNG"), max_pixels=10**8, working_size_px=1600)
    assert decoded.image.size == working


def test_huge_jpeg_is_reduced_past_the_smallest_draft() -> None:
    huge = Image.new("RGB", (20_000, 1000), (90, 120, 150))
    decoded = imaging.decode(encode(huge), max_pixels=10**8, working_size_px=1600)
    assert decoded.image.size == (1250, 63)  # 1/8 DCT scale, then halved


def test_decode_leaves_small_images_alone() -> None:
    decoded = imaging.decode(
        encode(load_photo("coffee"), "PNG"), max_pixels=10**8, working_size_px=1600
    )
    assert decoded.image.size == (600, 400)


def test_decode_applies_exif_orientation() -> None:
    photo = load_photo("grace_hopper")
    decoded = imaging.decode(exif_rotated_jpeg(photo), max_pixels=10**8, working_size_px=1600)

    assert decoded.image.size == photo.size
    diff = np.abs(np.asarray(decoded.image, dtype=np.int16) - np.asarray(photo, dtype=np.int16))
    assert diff.mean() < 4


def test_decode_drops_exif_and_gps() -> None:
    decoded = imaging.decode(
        gps_jpeg(load_photo("astronaut")), max_pixels=10**8, working_size_px=1600
    )
    assert "exif" not in decoded.image.info
    assert not decoded.image.getexif()
    data, extension, content_type = imaging.encode(decoded.image)
    assert (extension, content_type) == ("jpg", "image/jpeg")
    assert b"Exif" not in data


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(ImageTooLarge):
        imaging.decode(png_claiming(10_000, 10_000), max_pixels=50_000_000, working_size_px=1600)
    with pytest.raises(ImageTooLarge):
        imaging.decode(encode(load_photo("coffee")), max_pixels=1000, working_size_px=1600)


def test_truncated_png_is_invalid() -> None:
    data = encode(load_photo("coffee"), "PNG")
    with pytest.raises(InvalidImage):
        imaging.decode(data[: len(data) // 3], max_pixels=10**8, working_size_px=1600)


def test_alpha_survives_and_encodes_as_png() -> None:
    rgba = Image.new("RGBA", (40, 30), (10, 20, 30, 128))
    decoded = imaging.decode(encode(rgba, "PNG"), max_pixels=10**8, working_size_px=1600)

    assert decoded.has_alpha
    data, extension, _ = imaging.encode(decoded.image)
    assert extension == "png"
    assert Image.open(io.BytesIO(data)).getpixel((0, 0)) == (10, 20, 30, 128)


def test_palette_transparency_counts_as_alpha() -> None:
    palette = Image.new("P", (20, 20), 0)
    palette.info["transparency"] = 0
    decoded = imaging.decode(encode(palette, "PNG"), max_pixels=10**8, working_size_px=1600)
    assert decoded.has_alpha


def test_contour_mask_fills_and_feathers() -> None:
    square = np.array([[20, 20], [80, 20], [80, 80], [20, 80]], dtype=np.float32)

    mask = np.asarray(imaging.contour_mask((100, 100), square, feather_px=6))

    assert mask[50, 50] == 255
    assert mask[5, 5] == 0
    assert 40 < mask[50, 20] < 220  # the edge is soft
    assert mask.shape == (100, 100)


def test_contour_mask_clips_at_the_image_edge() -> None:
    beyond = np.array([[-50, -50], [30, -50], [30, 30], [-50, 30]], dtype=np.float32)
    mask = np.asarray(imaging.contour_mask((64, 48), beyond, feather_px=0))
    assert mask[0, 0] == 255
    assert mask[40, 40] == 0


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_corrupted_files_only_raise_the_function_errors(fmt: str) -> None:
    """Seeded byte flips and truncations: each decode succeeds or raises an AvatarError."""
    from avatar.errors import AvatarError

    original = encode(load_photo("coffee").resize((120, 80)), fmt)
    rng = random.Random(fmt)
    outcomes = set()
    for _ in range(60):
        data = bytearray(original)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randrange(len(data))] if rng.random() < 0.3 else data)
        try:
            imaging.decode(cut, max_pixels=10**8, working_size_px=1600)
            outcomes.add("ok")
        except AvatarError as error:
            outcomes.add(error.code)
    assert "invalid_image" in outcomes

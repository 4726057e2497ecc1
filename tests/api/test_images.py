"""The thin upload path: metadata stripped losslessly, orientation kept, hostile input refused."""

from __future__ import annotations

import contextlib
import io
import random
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps
from PIL.PngImagePlugin import PngImageFile, PngInfo

from api.errors import ApiError, ImageTooLarge, InvalidImage, UnsupportedImage
from api.images import PreparedImage, exif, jpeg, png, prepare, sniff, webp, worth_a_thread

REPO = Path(__file__).resolve().parents[2]
MAX_PIXELS = 50_000_000
HEIC_MAX_SIDE = 50
ORIENTATION = 0x0112
SOS = b"\xff\xda"

# Marker strings put into every kind of metadata; none may be found in what is forwarded.
GPS_SECRET = b"GPSSECRET-52N"
MAKE_SECRET = b"MAKESECRET"
MAKER_NOTE_SECRET = b"MAKERNOTESECRET"
XMP_SECRET = b"XMPSECRET"
COMMENT_SECRET = b"COMMENTSECRET"
IPTC_SECRET = b"IPTCSECRET"
MPF_SECRET = b"MPFSECRET"
TRAILER_SECRET = b"TRAILERGPSSECRET"
TEXT_SECRET = b"TEXTSECRET"
ITXT_SECRET = b"ITXTSECRET"
C2PA_SECRET = b"C2PASECRET"
SECRETS = (
    GPS_SECRET,
    MAKE_SECRET,
    MAKER_NOTE_SECRET,
    XMP_SECRET,
    COMMENT_SECRET,
    IPTC_SECRET,
    MPF_SECRET,
    TRAILER_SECRET,
    TEXT_SECRET,
    ITXT_SECRET,
    C2PA_SECRET,
    b"ZTXTSECRET",
    b"http://ns.adobe.com/xap/1.0/",
    b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x04",  # the header of the EXIF put in (4 tags)
)


# --- building inputs -------------------------------------------------------------------------


def picture(mode: str, size: tuple[int, int] = (96, 64), seed: int = 0) -> Image.Image:
    """A noisy gradient (so that JPEG data has 0xFF bytes to stuff) in the given mode."""
    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.add.outer(np.arange(height) * 2, np.arange(width)).astype(np.int16)
    channels = 4 if mode in ("RGBA", "CMYK") else 3
    base = np.stack([ramp + 40 * c for c in range(channels)], axis=-1)
    noisy = np.clip(base % 256 + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
    if mode == "CMYK":
        return Image.frombytes("CMYK", size, noisy.tobytes())
    if mode == "P":
        return Image.fromarray(noisy[..., :3]).quantize(16)
    return Image.fromarray(noisy[..., :channels], "RGBA" if channels == 4 else "RGB")


def upright_picture(size: tuple[int, int] = (48, 64)) -> Image.Image:
    """A smooth picture whose top, bottom, left and right all differ (to tell rotations apart)."""
    width, height = size
    rows, cols = np.mgrid[0:height, 0:width]
    rgb = np.stack([rows * 255 // height, cols * 255 // width, (rows < height // 4) * 200], -1)
    return Image.fromarray(rgb.astype(np.uint8))


@cache
def icc_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def camera_exif(orientation: int | None = 6, gps: bytes = GPS_SECRET) -> Image.Exif:
    """EXIF as a phone writes it: make, maker note, GPS and the orientation."""
    tags = Image.Exif()
    if orientation is not None:
        tags[ORIENTATION] = orientation
    tags[0x010F] = MAKE_SECRET.decode()
    tags[0x8769] = {0x927C: MAKER_NOTE_SECRET + b"\x00" * 8}
    tags[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 0x12: gps.decode()}
    return tags


def xmp() -> bytes:
    return b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description>' + XMP_SECRET + b"</x:xmpmeta>"


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def with_segments(data: bytes, *segments: bytes) -> bytes:
    """The JPEG with more segments right after SOI."""
    return data[:2] + b"".join(segments) + data[2:]


def jpeg_bytes(image: Image.Image, exif_tags: Image.Exif | None = None, **save: object) -> bytes:
    out = io.BytesIO()
    if exif_tags is not None:
        save["exif"] = exif_tags
    save.setdefault("quality", 90)
    image.save(out, "JPEG", **save)
    return out.getvalue()


def phone_jpeg(image: Image.Image, **save: object) -> tuple[bytes, bytes]:
    """A JPEG with every kind of metadata, and the same followed by an MPF-like trailer.

    Returns (the primary image as written, the upload: primary + trailer).
    """
    primary = jpeg_bytes(
        image,
        camera_exif(),
        xmp=xmp(),
        comment=COMMENT_SECRET,
        icc_profile=icc_profile(),
        **save,
    )
    primary = with_segments(
        primary,
        segment(0xED, b"Photoshop 3.0\x008BIM" + IPTC_SECRET),
        segment(0xE2, b"MPF\x00MM\x00*" + MPF_SECRET),
        segment(0xE2, b"FPXR\x00" + MPF_SECRET),
        segment(0xE5, b"VENDOR" + MAKE_SECRET),
    )
    # Phones append a secondary image (depth map, preview) after EOI, with its own EXIF and GPS.
    secondary = jpeg_bytes(picture("RGB", (16, 16), seed=9), camera_exif(gps=TRAILER_SECRET))
    return primary, primary + secondary + b"VENDORTRAILER" + MAKE_SECRET


def png_bytes(
    image: Image.Image, info: PngInfo | None = None, exif_tags: Image.Exif | None = None
) -> bytes:
    out = io.BytesIO()
    save: dict[str, object] = {"icc_profile": icc_profile()}
    if info is not None:
        save["pnginfo"] = info
    if exif_tags is not None:
        save["exif"] = exif_tags
    image.save(out, "PNG", **save)
    return out.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def phone_png(image: Image.Image) -> bytes:
    info = PngInfo()
    info.add_text("Comment", TEXT_SECRET.decode())
    info.add_text("Author", "ZTXTSECRET", zip=True)
    info.add_itxt("Description", ITXT_SECRET.decode(), lang="en", tkey="Description")
    info.add_itxt("XML:com.adobe.xmp", xmp().decode())
    info.add(b"tIME", struct.pack(">HBBBBB", 2024, 5, 17, 12, 30, 0))
    info.add(b"caBX", C2PA_SECRET)  # C2PA manifests travel in a private chunk
    data = png_bytes(image, info, camera_exif())
    return data + png_chunk(b"tEXt", b"After\x00" + TEXT_SECRET)  # past IEND: left out


def webp_bytes(image: Image.Image, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "WEBP", **save)
    return out.getvalue()


def webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level chunks of a WebP (a reader of the tests' own)."""
    (size,) = struct.unpack_from("<I", data, 4)
    chunks, pos = [], 12
    while pos < 8 + size:
        (length,) = struct.unpack_from("<I", data, pos + 4)
        chunks.append((data[pos : pos + 4], data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + length % 2
    return chunks


def with_webp_chunk(data: bytes, kind: bytes, payload: bytes) -> bytes:
    """The WebP with one more chunk at the end, its RIFF size fixed."""
    pad = b"\x00" * (len(payload) % 2)
    body = data[12:] + kind + struct.pack("<I", len(payload)) + payload + pad
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def phone_webp(image: Image.Image, **save: object) -> bytes:
    data = webp_bytes(image, exif=camera_exif(), xmp=xmp(), icc_profile=icc_profile(), **save)
    data = with_webp_chunk(data, b"C2PA", C2PA_SECRET)
    return data + b"TRAILING" + MAKE_SECRET  # past the RIFF size: left out


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG up to IEND (a reader of the tests' own)."""
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def run(data: bytes, **limits: int) -> PreparedImage:
    options = {"max_pixels": MAX_PIXELS, "heic_max_side_px": HEIC_MAX_SIDE, **limits}
    return prepare(data, **options)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- the metadata cases ----------------------------------------------------------------------


def jpeg_scans(data: bytes) -> bytes:
    """From the first scan to EOI (the output ends at EOI)."""
    return data[data.index(SOS) :]


def idat(data: bytes) -> bytes:
    return b"".join(payload for kind, payload in png_chunks(data) if kind == b"IDAT")


def webp_bitstreams(data: bytes) -> bytes:
    kept = (b"VP8 ", b"VP8L", b"ALPH")
    return b"".join(payload for kind, payload in webp_chunks(data) if kind in kept)


def jpeg_case(mode: str, **save: object) -> tuple[bytes, bytes]:
    primary, upload = phone_jpeg(picture(mode), **save)
    return upload, jpeg_scans(primary)


def png_case(mode: str) -> tuple[bytes, bytes]:
    image = picture(mode)
    if mode == "P":
        image.info["transparency"] = 0
    upload = phone_png(image)
    return upload, idat(upload)


def webp_case(mode: str, **save: object) -> tuple[bytes, bytes]:
    upload = phone_webp(picture(mode), **save)
    return upload, webp_bitstreams(upload)


CASES: dict[str, tuple[Callable[[], tuple[bytes, bytes]], Callable[[bytes], bytes], str]] = {
    "jpeg-baseline": (lambda: jpeg_case("RGB"), jpeg_scans, "image/jpeg"),
    "jpeg-progressive": (lambda: jpeg_case("RGB", progressive=True), jpeg_scans, "image/jpeg"),
    "jpeg-cmyk-adobe": (lambda: jpeg_case("CMYK"), jpeg_scans, "image/jpeg"),
    "jpeg-restart-markers": (
        lambda: jpeg_case("RGB", restart_marker_blocks=1),
        jpeg_scans,
        "image/jpeg",
    ),
    "png-rgb": (lambda: png_case("RGB"), idat, "image/png"),
    "png-rgba": (lambda: png_case("RGBA"), idat, "image/png"),
    "png-palette-trns": (lambda: png_case("P"), idat, "image/png"),
    "webp-lossy": (lambda: webp_case("RGB", quality=80), webp_bitstreams, "image/webp"),
    "webp-lossless": (lambda: webp_case("RGB", lossless=True), webp_bitstreams, "image/webp"),
    "webp-alpha": (lambda: webp_case("RGBA", quality=80), webp_bitstreams, "image/webp"),
}


# What each case must really exercise, checked in the output.
FEATURES: dict[str, Callable[[bytes], bool]] = {
    "jpeg-progressive": lambda out: out.count(SOS) > 1,
    "jpeg-cmyk-adobe": lambda out: segment(0xEE, b"Adobe")[:2] in out and b"Adobe" in out,
    "jpeg-restart-markers": lambda out: b"\xff\xd0" in out and b"\xff\xdd" in out,
    "png-rgba": lambda out: opened(out).mode == "RGBA",
    "png-palette-trns": lambda out: b"PLTE" in out and b"tRNS" in out,
    "webp-lossy": lambda out: b"VP8 " in out,
    "webp-lossless": lambda out: b"VP8L" in out,
    "webp-alpha": lambda out: b"ALPH" in out,
}


def same_pixels(left: Image.Image, right: Image.Image) -> bool:
    if left.mode != right.mode or left.size != right.size:
        return False
    if left.mode == "P" and left.convert("RGBA").tobytes() != right.convert("RGBA").tobytes():
        return False
    return np.array_equal(np.asarray(left), np.asarray(right))


# Pillow warns about the fake MPF segment when it reads the input, never the output.
@pytest.mark.filterwarnings("ignore:Image appears to be a malformed MPO file")
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("case", CASES)
def test_metadata_is_stripped_losslessly_and_orientation_kept(case: str) -> None:
    build, image_data, content_type = CASES[case]
    upload, compressed = build()
    assert GPS_SECRET in upload  # the input really carries what must go

    result = run(upload)

    out = result.data
    assert FEATURES.get(case, lambda _: True)(out)
    assert result.content_type == content_type
    assert (result.width, result.height) == (96, 64)
    assert image_data(out) == compressed  # the compressed image data, byte for byte
    assert same_pixels(opened(upload), opened(out))  # orientation applied on neither
    assert dict(opened(out).getexif()) == {ORIENTATION: 6}
    assert opened(out).info.get("icc_profile") == icc_profile()
    for secret in SECRETS:
        assert secret not in out, secret


def test_jpeg_exif_follows_soi_or_jfif_and_nothing_follows_eoi() -> None:
    _, upload = phone_jpeg(picture("RGB"))
    out = run(upload).data
    assert out[2:4] == b"\xff\xe0"  # JFIF (without a thumbnail), then the EXIF
    assert out[20:22] == b"\xff\xe1"
    assert out[24:30] == exif.EXIF_HEADER
    assert out.endswith(b"\xff\xd9")
    assert out.count(b"\xff\xd8") == 1
    cmyk = run(phone_jpeg(picture("CMYK"))[1]).data
    assert cmyk[2:4] == b"\xff\xe1"  # no JFIF: EXIF right after SOI
    assert b"Adobe" in cmyk


def test_webp_flags_follow_the_chunks_kept() -> None:
    out = run(phone_webp(picture("RGBA"), quality=80)).data
    kinds = [kind for kind, _ in webp_chunks(out)]
    assert kinds == [b"VP8X", b"ICCP", b"ALPH", b"VP8 ", b"EXIF"]
    flags = webp_chunks(out)[0][1][0]
    assert flags & 0x08  # EXIF
    assert not flags & 0x04  # XMP
    assert flags & 0x20  # ICC
    assert flags & 0x10  # alpha
    (riff_size,) = struct.unpack_from("<I", out, 4)
    assert riff_size + 8 == len(out)


def test_png_exif_chunk_sits_right_after_the_header() -> None:
    out = run(phone_png(picture("RGB"))).data
    kinds = [kind for kind, _ in png_chunks(out)]
    assert kinds[:2] == [b"IHDR", b"eXIf"]
    assert kinds[-1] == b"IEND"
    assert out.endswith(png_chunk(b"IEND", b""))
    assert set(kinds) <= png.KEPT_CHUNKS | {b"eXIf"}
    decoded = opened(out)
    assert isinstance(decoded, PngImageFile)
    assert decoded.text == {}


def test_animations_keep_every_frame() -> None:
    frames = [picture("RGB", seed=seed) for seed in range(3)]
    for save in (
        {"format": "PNG", "exif": camera_exif()},
        {"format": "WEBP", "lossless": True, "exif": camera_exif()},
    ):
        buffer = io.BytesIO()
        frames[0].save(buffer, save_all=True, append_images=frames[1:], duration=100, **save)
        out = run(buffer.getvalue()).data
        before, after = opened(buffer.getvalue()), opened(out)
        assert getattr(after, "n_frames", 1) == getattr(before, "n_frames", 1) == 3
        for index in range(3):
            before.seek(index)
            after.seek(index)
            assert np.array_equal(
                np.asarray(before.convert("RGB")), np.asarray(after.convert("RGB"))
            )
        assert GPS_SECRET not in out


# --- orientation -----------------------------------------------------------------------------

NO_EXIF_BUILDERS: dict[str, Callable[[Image.Exif | None], bytes]] = {
    "jpeg": lambda tags: jpeg_bytes(picture("RGB"), tags),
    "png": lambda tags: png_bytes(picture("RGB"), exif_tags=tags),
    "webp": lambda tags: webp_bytes(picture("RGB"), **({"exif": tags} if tags else {})),
}


EXIF_VARIANTS: dict[str, Callable[[], Image.Exif | None]] = {
    "no-exif": lambda: None,
    "orientation-1": lambda: camera_exif(1),
    "no-orientation-tag": lambda: camera_exif(None),
}


@pytest.mark.parametrize("kind", NO_EXIF_BUILDERS)
@pytest.mark.parametrize("variant", EXIF_VARIANTS)
def test_upright_or_no_exif_gives_no_exif_at_all(kind: str, variant: str) -> None:
    tags = EXIF_VARIANTS[variant]()
    out = run(NO_EXIF_BUILDERS[kind](tags)).data
    assert dict(opened(out).getexif()) == {}
    assert b"Exif\x00\x00" not in out
    assert b"eXIf" not in out
    assert b"EXIF" not in out
    assert b"MM\x00*" not in out
    assert b"II*\x00" not in out
    assert GPS_SECRET not in out
    if kind == "webp" and out[12:16] == b"VP8X":
        assert not out[20] & 0x08


SIDEWAYS_BUILDERS: dict[str, tuple[Callable[[Image.Image, Image.Exif], bytes], float]] = {
    "jpeg": (lambda image, tags: jpeg_bytes(image, tags, quality=95), 4.0),
    "png": (lambda image, tags: png_bytes(image, exif_tags=tags), 0.0),
    "webp-lossless": (lambda image, tags: webp_bytes(image, exif=tags, lossless=True), 0.0),
    "webp-lossy": (lambda image, tags: webp_bytes(image, exif=tags, quality=95), 4.0),
}


@pytest.mark.parametrize("kind", SIDEWAYS_BUILDERS)
def test_a_sideways_photo_stays_sideways_and_turns_upright(kind: str) -> None:
    build, tolerance = SIDEWAYS_BUILDERS[kind]
    upright = upright_picture()
    # How a phone held upright stores it: the sensor's rotated frame, orientation 6.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    result = run(build(stored, camera_exif(6)))
    assert (result.width, result.height) == (64, 48)
    assert opened(result.data).size == (64, 48)
    turned = ImageOps.exif_transpose(opened(result.data))
    assert turned.size == (48, 64)
    difference = np.abs(np.asarray(turned.convert("RGB"), np.int16) - np.asarray(upright))
    assert difference.mean() <= tolerance


@pytest.mark.parametrize("value", range(1, 9))
def test_every_orientation_survives(value: int) -> None:
    out = run(jpeg_bytes(picture("RGB"), camera_exif(value))).data
    assert dict(opened(out).getexif()) == ({} if value == 1 else {ORIENTATION: value})


def test_exif_reader_is_bounds_checked() -> None:
    tiff = exif.minimal_tiff(6)
    assert exif.orientation(tiff) == 6
    assert exif.orientation(exif.EXIF_HEADER + tiff) == 6
    tags = Image.Exif()
    tags.load(exif.EXIF_HEADER + tiff)
    assert dict(tags) == {ORIENTATION: 6}
    assert exif.orientation(camera_exif(3).tobytes()) == 3
    little = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", ORIENTATION, 3, 1, 8, 0)
    assert exif.orientation(little + bytes(4)) == 8
    long_value = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHII", ORIENTATION, 4, 1, 5)
    assert exif.orientation(long_value) == 5
    for cut in range(22):  # header, count, and the one entry: 22 bytes
        assert exif.orientation(tiff[:cut]) == 1
    assert exif.orientation(b"MM\x00*\xff\xff\xff\xff") == 1
    assert exif.orientation(b"II*\x00\x08\x00\x00\x00\xff\xff") == 1
    assert exif.orientation(tiff.replace(b"\x00\x06", b"\x00\x09")) == 1
    with pytest.raises(ValueError, match=r"1\.\.8"):
        exif.minimal_tiff(9)


# --- sizes -----------------------------------------------------------------------------------

SIZE_BUILDERS: dict[str, Callable[[Image.Image], bytes]] = {
    "jpeg": lambda image: jpeg_bytes(image),
    "jpeg-progressive": lambda image: jpeg_bytes(image, progressive=True),
    "png": lambda image: png_bytes(image),
    "webp-simple-lossy": lambda image: webp_bytes(image),
    "webp-simple-lossless": lambda image: webp_bytes(image, lossless=True),
    "webp-extended": lambda image: webp_bytes(image, icc_profile=icc_profile()),
}


@pytest.mark.parametrize("kind", SIZE_BUILDERS)
def test_size_is_read_from_the_header(kind: str) -> None:
    data = SIZE_BUILDERS[kind](picture("RGB", (123, 45)))
    result = run(data)
    assert (result.width, result.height) == (123, 45)
    assert run(data, max_pixels=123 * 45).width == 123
    with pytest.raises(ImageTooLarge):
        run(data, max_pixels=123 * 45 - 1)


def bomb_png(width: int, height: int) -> bytes:
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    data = png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return png.SIGNATURE + header + data + png_chunk(b"IEND", b"")


def test_a_huge_header_is_refused_before_any_decoding() -> None:
    jpeg_data = bytearray(jpeg_bytes(picture("RGB", (16, 16))))
    sof = jpeg_data.index(b"\xff\xc0")
    jpeg_data[sof + 5 : sof + 9] = struct.pack(">HH", 50000, 50000)
    webp_data = bytearray(webp_bytes(picture("RGB", (16, 16)), icc_profile=icc_profile()))
    webp_data[24:30] = (49999).to_bytes(3, "little") * 2
    for data in (bomb_png(50000, 50000), bytes(jpeg_data), bytes(webp_data)):
        started = time.perf_counter()
        with pytest.raises(ImageTooLarge):
            run(data)
        assert time.perf_counter() - started < 0.05


# --- HEIC ------------------------------------------------------------------------------------


def heic_bytes(image: Image.Image, **save: object) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    image.save(out, "HEIF", quality=90, **save)
    return out.getvalue()


def test_heic_is_reencoded_upright_small_and_without_exif() -> None:
    upright = upright_picture((96, 128))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    # Given EXIF bytes with orientation 6, pillow-heif writes an `irot` transform (as phones do).
    data = heic_bytes(stored, exif=camera_exif(6).tobytes(), icc_profile=icc_profile())
    assert b"irot" in data
    assert sniff(data[:12]) == "heif"

    result = run(data)

    assert result.content_type == "image/jpeg"
    out = opened(result.data)
    assert out.format == "JPEG"
    assert out.size == (result.width, result.height) == (32, 43)  # reduced by 3
    assert max(out.size) <= HEIC_MAX_SIDE
    assert dict(out.getexif()) == {}
    assert b"Exif" not in result.data
    assert GPS_SECRET not in result.data
    assert out.info.get("icc_profile") == icc_profile()
    expected = np.asarray(upright.reduce(3), np.int16)
    assert np.abs(np.asarray(out, np.int16) - expected).mean() < 8


def test_heic_with_alpha_becomes_png_and_limits_hold() -> None:
    image = picture("RGBA", (40, 30))
    result = run(heic_bytes(image))
    assert result.content_type == "image/png"
    assert opened(result.data).mode == "RGBA"
    with pytest.raises(ImageTooLarge):
        run(heic_bytes(picture("RGB", (40, 30))), max_pixels=40 * 30 - 1)


def test_broken_heic_is_invalid() -> None:
    data = heic_bytes(picture("RGB", (40, 30)))
    for cut in (12, 40, len(data) // 2, len(data) - 10):
        with pytest.raises(InvalidImage):
            run(data[:cut])


# --- hostile input ---------------------------------------------------------------------------


@cache
def small_inputs() -> dict[str, bytes]:
    image = picture("RGB", (24, 16))
    return {
        "jpeg": phone_jpeg(image, progressive=True)[0],
        "png": png_bytes(image, exif_tags=camera_exif()),
        "webp": webp_bytes(image, exif=camera_exif(), icc_profile=icc_profile()),
        "webp-simple": webp_bytes(image, lossless=True),
    }


STRIPPERS = {"jpeg": jpeg.strip, "png": png.strip, "webp": webp.strip, "webp-simple": webp.strip}


@pytest.mark.parametrize("kind", ["jpeg", "png", "webp", "webp-simple"])
def test_every_truncation_is_invalid(kind: str) -> None:
    data = small_inputs()[kind]
    magic = 12 if kind.startswith("webp") else 8 if kind == "png" else 3
    for cut in range(1, magic):
        with pytest.raises(UnsupportedImage):
            run(data[:cut])
    for cut in range(magic, len(data)):
        with pytest.raises(InvalidImage):
            run(data[:cut])


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random change, mostly in the header area where lengths and sizes live."""
    mutated = bytearray(data)
    area = min(len(data), 300) if rng.random() < 0.8 else len(data)
    pos = rng.randrange(area)
    choice = rng.randrange(5)
    if choice == 0:
        mutated[pos] = rng.randrange(256)
    elif choice == 1:
        mutated[pos : pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff"])
    elif choice == 2:
        del mutated[pos : pos + rng.randrange(1, 16)]
    elif choice == 3:
        mutated[pos:pos] = rng.randbytes(rng.randrange(1, 16))
    else:
        for _ in range(rng.randrange(2, 8)):
            mutated[rng.randrange(area)] ^= 1 << rng.randrange(8)
    return bytes(mutated)


def with_fixed_crcs(data: bytes) -> bytes:
    """The PNG with every CRC recomputed, so that mutations reach past the CRC check."""
    fixed, pos = bytearray(data), 8
    while pos + 12 <= len(fixed):
        (length,) = struct.unpack_from(">I", fixed, pos)
        end = pos + 8 + length
        if end + 4 > len(fixed):
            break
        fixed[end : end + 4] = struct.pack(">I", zlib.crc32(fixed[pos + 4 : end]))
        pos = end + 4
    return bytes(fixed)


@pytest.mark.parametrize("kind", ["jpeg", "png", "webp", "webp-simple"])
def test_mutated_headers_give_only_api_errors(kind: str) -> None:
    rng = random.Random(f"mutations-{kind}")
    data = small_inputs()[kind]
    started = time.perf_counter()
    for _ in range(1500):
        mutated = mutate(data, rng)
        if kind == "png" and rng.random() < 0.7:
            mutated = with_fixed_crcs(mutated)
        try:
            result = run(mutated)
        except ApiError:
            pass
        else:
            assert run(result.data).data == result.data  # what is let through is stable
        # Straight into the parser too: it must not need prepare's safety net.
        with contextlib.suppress(ApiError):
            STRIPPERS[kind](mutated, max_pixels=MAX_PIXELS)
    assert time.perf_counter() - started < 5


def test_random_bytes_empty_input_and_non_images() -> None:
    rng = random.Random(7)
    magics = [b"\xff\xd8\xff", png.SIGNATURE, b"RIFF\x10\x00\x00\x00WEBP", b""]
    for _ in range(500):
        data = rng.choice(magics) + rng.randbytes(rng.randrange(0, 600))
        with contextlib.suppress(ApiError):
            run(data)
    with pytest.raises(InvalidImage):
        run(b"")
    for data in (b"GIF89a" + bytes(40), b"BM" + bytes(60), b"%PDF-1.7\n", b"<html></html>"):
        with pytest.raises(UnsupportedImage):
            run(data)


def test_structural_faults_are_invalid() -> None:
    jpeg_data = small_inputs()["jpeg"]
    png_data = bomb_png(4, 4)
    faults = [
        jpeg_data[: jpeg_data.index(SOS)] + b"\xff\xd9",  # no scan
        jpeg_data.replace(b"\xff\xc2", b"\xff\xe9", 1),  # no frame header
        png_data.replace(b"IDAT", b"IDAX"),  # bad CRC
        png.SIGNATURE + png_chunk(b"tEXt", b"a\x00b") + png_data[8:],  # IHDR not first
        png_data.replace(png_chunk(b"IEND", b""), b""),  # no IEND
        bomb_png(0, 4),
    ]
    for data in faults:
        with pytest.raises(InvalidImage):
            run(data)


def test_sniff_by_magic_bytes() -> None:
    assert sniff(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff(png.SIGNATURE) == "png"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBP") == "webp"
    assert sniff(b"\x00\x00\x00\x18ftypmif1") == "heif"
    assert sniff(b"\x00\x00\x00\x18ftypavif") is None
    assert sniff(b"RIFF\x00\x00\x00\x00WAVE") is None
    assert sniff(b"") is None


# --- no Pillow on the thin path --------------------------------------------------------------


def test_the_thin_path_does_not_import_pillow(tmp_path: Path) -> None:
    inputs = small_inputs()
    for kind in ("jpeg", "png", "webp"):
        (tmp_path / kind).write_bytes(inputs[kind])
    code = (
        "import sys, pathlib\n"
        "from api.images import prepare\n"
        f"for path in sorted(pathlib.Path({str(tmp_path)!r}).iterdir()):\n"
        "    prepare(path.read_bytes(), max_pixels=10**6, heic_max_side_px=100)\n"
        "print('PIL' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_only_work_that_releases_the_gil_goes_to_a_thread() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    small_heic = io.BytesIO()
    picture("RGB").save(small_heic, "HEIF")
    big = 512 * 1024
    assert worth_a_thread(small_heic.getvalue())  # a decode, whatever the file's size
    assert worth_a_thread(png.SIGNATURE + b"\x00" * big)  # zlib's CRCs release the GIL
    assert not worth_a_thread(png.SIGNATURE + b"\x00" * 1000)
    assert not worth_a_thread(b"\xff\xd8\xff" + b"\x00" * big)  # re holds the GIL: no gain
    assert not worth_a_thread(b"RIFF\x00\x00\x00\x00WEBP" + b"\x00" * big)
    assert not worth_a_thread(b"not an image at all" * 100_000)

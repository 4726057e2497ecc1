"""Helpers for the function's tests: real photographs from PyPI packages and crafted files."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from PIL import Image
from werkzeug.test import TestResponse

from avatar.backends import Backends
from avatar.faces import Face

REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN_PY = REPO_ROOT / "cloud_functions" / "main.py"
MEDIA_KEY = "test-media-signing-key"
MEDIA_BASE_URL = "http://media.test/media"

# A POST helper of the fixtures (here, not in conftest: several test folders have a conftest).
Post = Callable[..., TestResponse]


def load_photo(name: str) -> Image.Image:
    """One of the offline photographs, as RGB: astronaut, camera, grace_hopper, chelsea, coffee."""
    if name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as handle:
            return Image.open(handle).convert("RGB")
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **params: Any) -> bytes:
    """The image saved in a format (JPEG quality 92 unless given)."""
    if fmt == "JPEG":
        params.setdefault("quality", 92)
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def exif_rotated_jpeg(image: Image.Image) -> bytes:
    """The photo stored sideways with EXIF Orientation=6 (viewers rotate it upright)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    return encode(image.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())


def gps_jpeg(image: Image.Image) -> bytes:
    """A JPEG whose EXIF has a GPS position and a camera owner."""
    exif = Image.Exif()
    exif[0x013B] = "Ada Lovelace"  # Artist
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.0)}
    return encode(image, exif=exif.tobytes())


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """A PNG chunk with its valid CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR (with a valid CRC) claims width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + (png_chunk(b"IEND", b""))
    )


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG with its SOF header patched to claim another size."""
    marker = jpeg.index(b"\xff\xc0")
    start = marker + 5  # FFC0, length (2), precision (1), then height and width
    return jpeg[:start] + struct.pack(">HH", height, width) + jpeg[start + 4 :]


def zip_with(name: str, content: bytes) -> bytes:
    """A minimal ZIP archive holding one file."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def side_by_side(*images: Image.Image) -> Image.Image:
    """The images pasted next to each other on a black canvas."""
    canvas = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)))
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width
    return canvas


def landmarks_of(face: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """A JSON face's landmarks as (x, y) tuples."""
    return {name: (p["x"], p["y"]) for name, p in face["landmarks"].items()}


def box_of(face: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """A JSON face's box as (x0, y0, x1, y1)."""
    b = face["box"]
    return (b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"])


# An image with the faces found in it and their masks, as the pipeline hands them to compose.
Case = tuple[Image.Image, list[Face], list[Image.Image]]


def detect(backends: Backends, image: Image.Image) -> Case:
    """The faces the backends find in the image, and their masks."""
    faces = backends.detector.detect(image)
    return image, faces, [backends.masker.face_mask(image, f) for f in faces]


def post_json(client: FlaskClient, jpeg: bytes, **fields: Any) -> TestResponse:
    """POST the image as JSON base64 with the fields."""
    return client.post("/", json={"image_base64": base64.b64encode(jpeg).decode(), **fields})

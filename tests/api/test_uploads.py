"""The upload path alone: streaming multipart under a size limit, magic bytes, then the image
checked and stripped (api.images; its own tests are in test_images.py)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from PIL import Image

from api.config import Settings
from api.error_handlers import install_error_handlers
from api.generations.service import prepare_upload
from api.images import sniff
from api.uploads import read_upload

LIMIT = 200_000


def an_app(settings: Settings) -> FastAPI:
    """The upload module behind one route, with the API's real problem+json handlers."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, object]:
        received = await read_upload(request, settings, fingerprint=True)
        image = await prepare_upload(received, settings)
        return {
            "animal": received.animal,
            "request_hash": received.request_hash,
            "content_type": image.content_type,
            "size": [image.width, image.height],
            "data": image.data.hex(),
        }

    return app


@pytest.fixture
def settings() -> Settings:
    return Settings(max_upload_bytes=LIMIT, forward_max_side_px=400, max_pixels=4_000_000)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=an_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


def jpeg_bytes(size: tuple[int, int] = (600, 300), *, exif: Image.Exif | None = None) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, size[0] // 4, size[1] // 4))  # a corner to track rotation
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif or Image.Exif())
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; a few compressed bytes stand in for the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)


def problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def post(
    client: httpx.AsyncClient, image: bytes | None, animal: str | None = "cat"
) -> httpx.Response:
    files = {"image": ("selfie.jpg", image, "image/jpeg")} if image is not None else None
    data = {"animal": animal} if animal is not None else None
    return await client.post("/upload", files=files, data=data)


async def test_a_phone_photo_is_forwarded_as_it_is_less_its_metadata(
    client: httpx.AsyncClient,
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0)}  # GPS
    photo = jpeg_bytes((1200, 600), exif=exif)
    response = await post(client, photo, animal=" Fox ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["animal"] == "fox"
    assert body["content_type"] == "image/jpeg"
    assert body["size"] == [1200, 600]  # not decoded, not resized: the function downscales
    data = bytes.fromhex(body["data"])
    out = Image.open(io.BytesIO(data))
    assert dict(out.getexif()) == {0x0112: 6}  # only the orientation, for the function
    assert b"PhoneMaker" not in data
    assert out.tobytes() == Image.open(io.BytesIO(photo)).tobytes()


async def test_png_and_webp_are_forwarded_in_their_own_format(client: httpx.AsyncClient) -> None:
    for fmt, content_type in (("PNG", "image/png"), ("WEBP", "image/webp")):
        out = io.BytesIO()
        Image.new("RGBA", (50, 40), (1, 2, 3, 100)).save(out, fmt)
        body = (await post(client, out.getvalue())).json()
        assert (body["content_type"], body["size"]) == (content_type, [50, 40])


async def test_heic_is_decoded_and_forwarded_as_jpeg_within_the_size(
    client: httpx.AsyncClient,
) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.new("RGB", (900, 600), (10, 200, 10)).save(out, "HEIF")
    response = await post(client, out.getvalue())
    assert response.status_code == 200, response.text
    assert response.json()["content_type"] == "image/jpeg"
    assert response.json()["size"] == [300, 200]  # reduced by a whole factor to <= 400 px


async def test_the_request_hash_covers_the_animal_and_the_raw_bytes(
    client: httpx.AsyncClient,
) -> None:
    image = jpeg_bytes()
    first = (await post(client, image, "cat")).json()["request_hash"]
    assert (await post(client, image, "CAT")).json()["request_hash"] == first
    assert (await post(client, image, "dog")).json()["request_hash"] != first
    assert (await post(client, jpeg_bytes((601, 300)), "cat")).json()["request_hash"] != first


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        (b"", 422, "invalid_image"),
        (jpeg_bytes()[:400], 422, "invalid_image"),
        (b"\xff\xd8\xff" + b"\x00" * 100, 422, "invalid_image"),
        (b"hello, this is a text file and not a picture at all\n" * 3, 415, "unsupported_image"),
        (b"GIF89a" + b"\x00" * 64, 415, "unsupported_image"),
        (png_header(50_000, 50_000), 413, "image_too_large"),
        (png_header(3000, 3000), 413, "image_too_large"),  # over this test's max_pixels of 4 M
    ],
)
async def test_bad_images_get_their_spec_code(
    client: httpx.AsyncClient, image: bytes, status: int, code: str
) -> None:
    problem(await post(client, image), status, code)


@pytest.mark.parametrize(
    ("animal", "with_image", "status"),
    [("unicorn", True, 422), (None, True, 422), ("cat", False, 422), ("x" * 5000, True, 422)],
)
async def test_missing_or_bad_fields_are_invalid_request(
    client: httpx.AsyncClient, animal: str | None, with_image: bool, status: int
) -> None:
    response = await post(client, jpeg_bytes() if with_image else None, animal)
    problem(response, status, "invalid_request")


async def test_a_body_that_is_not_multipart_is_invalid_request(client: httpx.AsyncClient) -> None:
    problem(await client.post("/upload", json={"animal": "cat"}), 422, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        b'--xyz\r\nContent-Disposition: form-data; name="animal"\r\n\r\ncat\r\n',  # no end
        b"this is not multipart at all",
        b"--xyz\r\nno-colon-header\r\n\r\ndata\r\n--xyz--\r\n",
    ],
)
async def test_malformed_multipart_is_a_400(client: httpx.AsyncClient, body: bytes) -> None:
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    response = await client.post("/upload", content=body, headers=headers)
    problem(response, 400, "invalid_request")


class CountingBody:
    """A request body handed out in chunks, counting how much of it the server pulled."""

    def __init__(self, prefix: bytes, chunks: int, chunk: bytes) -> None:
        self.prefix, self.chunks, self.chunk = prefix, chunks, chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.prefix
        for _ in range(self.chunks):
            self.pulled += 1
            yield self.chunk


def an_oversized_body() -> tuple[CountingBody, dict[str, str]]:
    prefix = (
        b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + jpeg_bytes()[:20]
    )
    body = CountingBody(prefix, chunks=200, chunk=b"\x00" * 64 * 1024)  # 12.8 MB
    return body, {"content-type": "multipart/form-data; boundary=xyz"}


async def test_a_declared_oversized_body_is_refused_before_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    body, headers = an_oversized_body()
    headers["content-length"] = str(200 * 64 * 1024 + 200)
    response = await client.post("/upload", content=body, headers=headers)
    problem(response, 413, "image_too_large")
    assert body.pulled == 0


async def test_a_chunked_oversized_body_is_refused_as_soon_as_it_passes_the_limit(
    client: httpx.AsyncClient,
) -> None:
    body, headers = an_oversized_body()
    response = await client.post("/upload", content=body, headers=headers)
    problem(response, 413, "image_too_large")
    assert body.pulled <= LIMIT // (64 * 1024) + 2


def test_magic_bytes_agree_with_the_spec() -> None:
    assert sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00") == "jpeg"
    assert sniff(b"\x89PNG\r\n\x1a\n\x00\x00\x00\r") == "png"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBP") == "webp"
    assert sniff(b"\x00\x00\x00\x18ftypheic") == "heif"
    assert sniff(b"\x00\x00\x00\x18ftypmif1") == "heif"
    assert sniff(b"\x00\x00\x00\x18ftypisom") is None  # an MP4
    assert sniff(b"GIF89a\x00\x00\x00\x00\x00\x00") is None
    assert sniff(b"") is None

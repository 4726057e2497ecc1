"""Uploads: the multipart body read as a stream under a size limit, then the image normalised.

The body is never held whole before its size is known to be acceptable: a Content-Length over the
limit is refused at once, and a body without one is counted as it streams. Normalisation (EXIF
orientation applied, downscaled, metadata stripped, re-encoded) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from api.config import Settings
from api.errors import BadRequest, ImageTooLarge, InvalidImage, InvalidRequest, UnsupportedImage
from avatar import imaging
from avatar.errors import UnsupportedImage as NotAnImage

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Room in the body for the boundaries, part headers and the `animal` field around the image.
FORM_OVERHEAD_BYTES = 64 * 1024
MAX_FIELD_BYTES = 1024
JPEG_QUALITY = 90
SNIFF_BYTES = 12
NOT_AN_IMAGE = "the image is not JPEG, PNG, WebP or HEIC"
MIME_TYPES: dict[imaging.ImageKind, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "heif": "image/heic",
}


@dataclass(frozen=True)
class Upload:
    """The raw fields of a generation request."""

    image: bytes
    animal: str
    # SHA-256 over the animal and the raw image bytes: tells a retry from a reused key.
    request_hash: str


@dataclass(frozen=True)
class NormalisedImage:
    """The image as it is forwarded: upright, at most `forward_max_side_px`, no metadata."""

    data: bytes
    content_type: str
    width: int
    height: int


def sniff_image_type(head: bytes) -> str | None:
    """The image's MIME type from its magic bytes (the function's own sniffing), or None."""
    try:
        return MIME_TYPES[imaging.sniff(head)]
    except NotAnImage:
        return None


def request_hash(animal: str, image_digest: bytes) -> str:
    """The idempotency fingerprint of a request: its animal and its image's SHA-256."""
    return hashlib.sha256(animal.encode() + b"\n" + image_digest).hexdigest()


class _FormCollector:
    """Callbacks for python-multipart: keeps the `image` part (capped) and the `animal` field."""

    def __init__(self, max_image_bytes: int) -> None:
        self.max_image_bytes = max_image_bytes
        self.image: bytearray | None = None
        self.image_digest = hashlib.sha256()
        self.fields: dict[str, bytearray] = {}
        self.ended = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._target: bytearray | None = None
        self._part_name = ""
        self._sniffed = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def _on_part_begin(self) -> None:
        self._disposition = b""
        self._target = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if bytes(self._header_field).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        self._part_name = params.get(b"name", b"").decode("utf-8", "replace")
        if self._part_name == "image":
            if self.image is not None:
                raise InvalidRequest("send one `image` file, not several")
            self.image = self._target = bytearray()
        elif self._part_name == "animal":
            self._target = self.fields.setdefault(self._part_name, bytearray())

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target is None:
            return
        self._target += data[start:end]
        if self._target is self.image:
            self.image_digest.update(data[start:end])
            self._check_image_so_far()
        elif len(self._target) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"the `{self._part_name}` field is too long")

    def _check_image_so_far(self) -> None:
        assert self.image is not None
        if len(self.image) > self.max_image_bytes:
            msg = f"the image is over {self.max_image_bytes} bytes"
            raise ImageTooLarge(msg)
        # Refuse a non-image as soon as its first bytes are in, not after reading it all.
        if not self._sniffed and len(self.image) >= SNIFF_BYTES:
            self._sniffed = True
            if sniff_image_type(bytes(self.image[:SNIFF_BYTES])) is None:
                raise UnsupportedImage(NOT_AN_IMAGE)

    def _on_part_end(self) -> None:
        self._target = None

    def _on_end(self) -> None:
        self.ended = True


def _boundary(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("send multipart/form-data with an `image` file and an `animal` field")
    return boundary


def _check_declared_length(request: Request, max_body_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise BadRequest("the Content-Length header is not a number")
    if int(declared) > max_body_bytes:
        msg = f"the upload is over the limit of {max_body_bytes} bytes"
        raise ImageTooLarge(msg)


async def _feed(parser: MultipartParser, chunks: AsyncIterator[bytes], max_body_bytes: int) -> None:
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > max_body_bytes:
            msg = f"the upload is over the limit of {max_body_bytes} bytes"
            raise ImageTooLarge(msg)
        parser.write(chunk)
    parser.finalize()


async def read_upload(request: Request, settings: Settings) -> Upload:
    """The `image` and `animal` of a multipart request, read as a stream under the size limit."""
    max_body_bytes = settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    _check_declared_length(request, max_body_bytes)
    form = _FormCollector(settings.max_upload_bytes)
    try:
        parser = MultipartParser(_boundary(request), form.callbacks())
        await _feed(parser, request.stream(), max_body_bytes)
    except (MultipartParseError, FormParserError) as exc:
        raise BadRequest("the multipart body is malformed") from exc
    except ClientDisconnect as exc:
        raise BadRequest("the upload was interrupted") from exc
    if not form.ended:
        raise BadRequest("the multipart body ends before its closing boundary")
    return _upload_from(form)


def _upload_from(form: _FormCollector) -> Upload:
    from avatar.catalogue import ANIMAL_IDS, get_animal

    if form.image is None:
        raise InvalidRequest("the `image` file is required")
    raw_animal = form.fields.get("animal")
    if raw_animal is None:
        raise InvalidRequest("the `animal` field is required")
    animal = get_animal(raw_animal.decode("utf-8", "replace"))
    if animal is None:
        msg = f"unknown animal; choose one of: {', '.join(sorted(ANIMAL_IDS))}"
        raise InvalidRequest(msg)
    image = bytes(form.image)
    if not image:
        raise InvalidImage("the image is empty")
    if sniff_image_type(image[:SNIFF_BYTES]) is None:
        raise UnsupportedImage(NOT_AN_IMAGE)
    return Upload(image, animal.id, request_hash(animal.id, form.image_digest.digest()))


def normalise_image(data: bytes, *, max_side_px: int, max_pixels: int) -> NormalisedImage:
    """Upright, at most `max_side_px` long, metadata-free JPEG (PNG when it has alpha).

    The function's own steps (avatar.imaging), so both sides shrink and strip alike.
    """
    imaging.register_heif()
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > max_pixels:
                msg = f"the image has {opened.width}x{opened.height} pixels, over {max_pixels}"
                raise ImageTooLarge(msg)
            if opened.format == "JPEG":
                opened.draft("RGB", imaging.draft_request(opened.size, max_side_px))
            opened.load()
            # In place: the copy exif_transpose makes otherwise is a whole decoded frame.
            ImageOps.exif_transpose(opened, in_place=True)
            # RGB (RGBA with alpha), shrunk by a whole factor, only the ICC profile kept.
            return _encode(imaging.working_copy(opened, max_side_px))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge("the image has too many pixels") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImage("the image cannot be decoded (truncated or corrupt)") from exc


def _encode(image: Image.Image) -> NormalisedImage:
    # A new file with no exif= argument: EXIF (GPS included) and XMP are left behind; the ICC
    # profile is kept so colours stay right.
    icc_profile = image.info.get("icc_profile")
    out = io.BytesIO()
    if image.mode == "RGBA":
        image.save(out, format="PNG", icc_profile=icc_profile)
        content_type = "image/png"
    else:
        image.save(out, format="JPEG", quality=JPEG_QUALITY, icc_profile=icc_profile)
        content_type = "image/jpeg"
    return NormalisedImage(out.getvalue(), content_type, image.width, image.height)


async def normalise_upload(upload: Upload, settings: Settings) -> NormalisedImage:
    """`normalise_image` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(
        normalise_image,
        upload.image,
        max_side_px=settings.forward_max_side_px,
        max_pixels=settings.max_pixels,
    )
